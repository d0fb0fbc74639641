// Command goclient is the Go SDK side of the end-to-end test. It connects to an MCP endpoint
// with no credentials and lets the SDK's client-credentials OAuth handler do the rest: the 401
// challenge's resource_metadata, the protected resource metadata, the authorization server
// metadata, the token request. Then it lists the tools and calls `add` and `whoami`.
//
// Each result is printed as one line; the exit status is non-zero on any failure.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth/extauth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
)

func main() {
	endpoint := flag.String("url", "", "MCP endpoint behind Caddy")
	clientID := flag.String("client-id", "", "OAuth client ID")
	secret := flag.String("client-secret", "", "OAuth client secret")
	issuer := flag.String("issuer", "", "expected authorization server issuer")
	flag.Parse()
	if err := run(*endpoint, *clientID, *secret, *issuer); err != nil {
		log.Fatalf("goclient: %v", err)
	}
}

func run(endpoint, clientID, secret, issuer string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	httpClient := &http.Client{Timeout: 20 * time.Second}
	oauth, err := extauth.NewClientCredentialsHandler(&extauth.ClientCredentialsHandlerConfig{
		Credentials: &oauthex.ClientCredentials{
			ClientID:         clientID,
			ClientSecretAuth: &oauthex.ClientSecretAuth{ClientSecret: secret},
			Issuer:           issuer,
		},
		HTTPClient: httpClient,
	})
	if err != nil {
		return err
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e-go-client", Version: "1.0.0"}, nil)
	sess, err := client.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint:     endpoint,
		HTTPClient:   httpClient,
		OAuthHandler: oauth,
	}, nil)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer sess.Close()

	tools, err := sess.ListTools(ctx, nil)
	if err != nil {
		return fmt.Errorf("tools/list: %w", err)
	}
	var names []string
	for _, t := range tools.Tools {
		names = append(names, t.Name)
	}
	slices.Sort(names)
	fmt.Println("tools:", strings.Join(names, ","))

	for _, call := range []*mcp.CallToolParams{
		{Name: "add", Arguments: map[string]any{"a": 2, "b": 40}},
		{Name: "whoami", Arguments: map[string]any{}},
	} {
		res, err := sess.CallTool(ctx, call)
		if err != nil {
			return fmt.Errorf("tools/call %s: %w", call.Name, err)
		}
		if res.IsError || len(res.Content) != 1 {
			return fmt.Errorf("tools/call %s: unexpected result %+v", call.Name, res)
		}
		tc, ok := res.Content[0].(*mcp.TextContent)
		if !ok {
			return fmt.Errorf("tools/call %s: content %T", call.Name, res.Content[0])
		}
		fmt.Printf("%s: %s\n", call.Name, tc.Text)
	}
	return nil
}
