package mcpauth

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// TestEveryJSONFieldHasCaddyfileSupport finds the JSON fields of the Handler by reflection
// and requires each to be set by one of these Caddyfiles, and each parsed config to survive a
// JSON round trip unchanged: a new field without a Caddyfile subdirective fails here.
func TestEveryJSONFieldHasCaddyfileSupport(t *testing.T) {
	caddyfiles := []string{`mcp_auth {
		resource               https://mcp.example.com/mcp
		authorization_servers  https://auth.example.com
		resource_name          "Example MCP server"
		resource_documentation https://docs.example.com/mcp
		scopes_supported       mcp:read mcp:write
		issuers                https://auth.example.com
		jwks_url               https://auth.example.com/jwks
		jwks_file              /etc/caddy/jwks.json
		jwks_refresh           15m
		audiences              https://mcp.example.com/mcp
		algorithms             RS256 ES256
		leeway                 1m
		require_at_jwt
		scopes                 mcp:read
		any_of                 mcp:write mcp:admin
		scope_claim            scp
		strip_token
		tool delete_* {
			scopes mcp:admin
			clients admin-console
			require_claim realm_access.roles admin
		}
		filter_tools_list
		filter_lists
		max_body_size 2MiB
		token_cache_size 5
		dpop {
			required
			algorithms ES256 EdDSA
			max_age 1m
			nonce {env.DPOP_NONCE_KEY}
			replay_cache 50
		}
		mtls_bound
		bind_sessions {env.MCP_SESSION_KEY}
		audit
		close_streams_at_expiry
		clients app-1 https://app.example.com/*
		require_claim groups mcp-users
		require_claim realm_access.roles mcp
		scope_implies mcp:admin mcp:write
		scope_implies mcp:write mcp:read
		allow_missing_audience_for cognito-client
		scope_prefix api://1234/
		public {
			tool search_*
			prompt greet
			resource_uri https://docs.example.com/*
			method logging/setLevel
		}
		challenge_in_result openai-mcp/*
	}`, `mcp_auth {
		resource               https://mcp.example.com/mcp
		authorization_servers  https://login.microsoftonline.com/organizations/v2.0
		issuers                https://login.microsoftonline.com/{tenantid}/v2.0
		tenants                72f988bf-86f1-41af-91ab-2d7cd011db47
		scopes                 mcp.read
	}`, `mcp_auth {
		resource               https://mcp.example.com/mcp
		authorization_servers  https://auth.example.com
		allow_any_audience
		skip_scopes
		introspection {
			endpoint      https://auth.example.com/introspect
			client_id     mcp-rs
			client_secret {env.MCP_RS_SECRET}
			auth_method   client_secret_post
			cache_ttl     1m
			negative_ttl  10s
			timeout       2s
			max_in_flight 8
			max_rate      20
			jwt_too
		}
	}`, `mcp_auth {
		resource               https://mcp.example.com/mcp
		authorization_servers  https://auth.example.com
		skip_scopes
		introspection {
			client_id   mcp-rs
			auth_method private_key_jwt
			private_key /etc/caddy/rs-key.pem
		}
	}`, `mcp_auth {
		resource               https://mcp.example.com/mcp
		authorization_servers  https://auth.example.com
		skip_scopes
		store redis {
			address        redis-1:26379 redis-2:26379
			master_name    mymaster
			username       mcp
			password       {env.REDIS_PASSWORD}
			tls            ca /etc/caddy/redis-ca.pem
			db             2
			key_prefix     fleet-a:
			timeout        250ms
			on_error       open
			encryption_key {env.MCP_STORE_KEY}
		}
	}`, `mcp_auth {
		resource               https://mcp.example.com/mcp
		authorization_servers  https://auth.example.com
		scopes                 mcp:read
		token_exchange {
			endpoint      https://auth.example.com/token
			client_id     mcp-gw
			auth_method   private_key_jwt
			private_key   /etc/caddy/gw-key.pem
			audience      https://api.example.com urn:example:api
			resource      https://api.example.com/
			scope         api:read api:write
			header        X-Upstream-Token
			cache_ttl     2m
			timeout       3s
			max_in_flight 4
		}
		tool github_* {
			exchange {
				audience https://api.github.com
				resource https://api.github.com/
				scope    repo
			}
		}
	}`, `mcp_auth {
		resource               https://mcp.example.com/mcp
		authorization_servers  https://auth.example.com
		scopes                 mcp:read
		token_exchange {
			client_id     mcp-gw
			client_secret {env.MCP_GW_SECRET}
			audience      https://api.example.com
		}
	}`}
	set := map[string]bool{}
	for _, cf := range caddyfiles {
		h, err := parseTestCaddyfile(cf)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := json.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		var keys map[string]json.RawMessage
		if err := json.Unmarshal(raw, &keys); err != nil {
			t.Fatal(err)
		}
		for k := range keys {
			set[k] = true
		}
		if in, ok := keys["introspection"]; ok {
			var sub map[string]json.RawMessage
			if err := json.Unmarshal(in, &sub); err != nil {
				t.Fatal(err)
			}
			for k := range sub {
				set["introspection."+k] = true
			}
		}
		var st struct {
			Store struct {
				Redis map[string]json.RawMessage `json:"redis"`
			} `json:"store"`
		}
		if err := json.Unmarshal(raw, &st); err != nil {
			t.Fatal(err)
		}
		for k, v := range st.Store.Redis {
			set["store."+k] = true
			if k == "tls" && strings.Contains(string(v), `"ca"`) {
				set["store.ca"] = true
			}
		}
		var nested struct {
			DPoP          map[string]json.RawMessage `json:"dpop"`
			TokenExchange map[string]json.RawMessage `json:"token_exchange"`
		}
		if err := json.Unmarshal(raw, &nested); err != nil {
			t.Fatal(err)
		}
		for k := range nested.DPoP {
			set["dpop."+k] = true
		}
		for k := range nested.TokenExchange {
			set["token_exchange."+k] = true
		}
		back := new(Handler)
		if err := json.Unmarshal(raw, back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(h, back) {
			t.Errorf("JSON round trip changed the config:\n %+v\n %+v", h, back)
		}
	}
	for _, g := range []struct {
		prefix string
		ht     reflect.Type
	}{{"", reflect.TypeFor[Handler]()}, {"dpop.", reflect.TypeFor[DPoPConfig]()},
		{"token_exchange.", reflect.TypeFor[TokenExchange]()}, {"token_exchange.", reflect.TypeFor[ExchangeTarget]()}} {
		prefix, ht := g.prefix, g.ht
		for i := range ht.NumField() {
			f := ht.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || name == "" || name == "-" {
				continue
			}
			if !set[prefix+name] {
				t.Errorf("JSON field %q (%s) is set by no Caddyfile subdirective in this test", prefix+name, f.Name)
			}
		}
	}
	// The store group, likewise.
	for _, ht := range []reflect.Type{reflect.TypeFor[RedisStore](), reflect.TypeFor[StoreTLS]()} {
		for i := range ht.NumField() {
			f := ht.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if f.IsExported() && name != "" && !set["store."+name] {
				t.Errorf("JSON field store.%q (%s) is set by no Caddyfile subdirective in this test", name, f.Name)
			}
		}
	}
	// The nested introspection group, likewise.
	it := reflect.TypeFor[Introspection]()
	for i := range it.NumField() {
		f := it.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		if !set["introspection."+name] {
			t.Errorf("JSON field introspection.%q (%s) is set by no Caddyfile subdirective in this test", name, f.Name)
		}
	}
}
