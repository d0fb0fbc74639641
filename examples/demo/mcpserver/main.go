// Command mcpserver is the demo MCP server: tools echo, add and whoami over Streamable HTTP at
// /mcp, built on the official Go SDK. It knows nothing about OAuth; Caddy's mcp_auth in front
// of it does.
//
//	go run ./examples/demo/mcpserver -addr 127.0.0.1:8081
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mcpauth/caddy-mcp-auth/examples/demo/internal/demo"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8081", "address to listen on")
	flag.Parse()

	mux := http.NewServeMux()
	mux.Handle("/mcp", demo.NewMCPHandler())
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()

	log.Printf("demo MCP server listening on http://%s/mcp", *addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
