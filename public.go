package mcpauth

import (
	"fmt"
	"slices"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/mcpauth/caddy-mcp-auth/internal/policy"
)

// public: what a caller without a token may do (internal/policy decides; see its public.go).
// This file holds the configuration: the `public` block, its JSON and Caddyfile forms, and
// its checks at load.

// PublicOps is the `public` block: the operations a caller without a token may use. Patterns
// are matched as rule patterns are: exact, or globs with `*`, byte for byte (no case folding,
// no trimming, no Unicode normalisation).
type PublicOps struct {
	// Tools are patterns of tool names a caller without a token may call (tools/call).
	//
	// JSON: `public.tools`. Caddyfile: `tool` inside `public`.
	Tools []string `json:"tools,omitempty"`

	// Prompts are patterns of prompt names a caller without a token may get (prompts/get, and
	// completion/complete on them).
	//
	// JSON: `public.prompts`. Caddyfile: `prompt` inside `public`.
	Prompts []string `json:"prompts,omitempty"`

	// ResourceURIs are patterns of resource URIs a caller without a token may read,
	// subscribe to and unsubscribe from. A URI not in normal form is refused with 400, as
	// with resource_uri rules.
	//
	// JSON: `public.resource_uris`. Caddyfile: `resource_uri` inside `public`.
	ResourceURIs []string `json:"resource_uris,omitempty"`

	// Methods are patterns of JSON-RPC methods a caller without a token may send, beyond
	// lifecycle and discovery, which are always allowed once `public` is set.
	//
	// JSON: `public.methods`. Caddyfile: `method` inside `public`.
	Methods []string `json:"methods,omitempty"`

	// filterTools: filter_tools_list or filter_lists is on: tools lists answered without a
	// token keep only what a plain sign-in unlocks.
	filterTools bool
}

// Validate checks the patterns.
func (p *PublicOps) Validate() error {
	for _, f := range []namedList{{"tools", p.Tools}, {"prompts", p.Prompts}, {"resource_uris", p.ResourceURIs}, {"methods", p.Methods}} {
		if slices.Contains(f.list, "") {
			return fmt.Errorf("public.%s: %w", f.name, errRuleEmptyMatch)
		}
	}
	for _, u := range p.ResourceURIs {
		if err := policy.CheckURIPattern(u); err != nil {
			return fmt.Errorf("public.resource_uris: %q: write patterns in the normal form of the URIs they name: %w", u, err)
		}
	}
	for _, m := range p.Methods {
		if err := policy.CheckPublicMethod(m); err != nil {
			return fmt.Errorf("public.methods: %w", err)
		}
	}
	return nil
}

// Provision checks the patterns and notes how lists are answered without a token. It runs
// before the policy is compiled (Handler.policyConfig hands it the patterns).
func (p *PublicOps) Provision(_ caddy.Context, h *Handler) error {
	if err := p.Validate(); err != nil {
		return err
	}
	p.filterTools = h.FilterToolsList || h.FilterLists
	return nil
}

// policyPublic is the block as the policy reads it.
func (p *PublicOps) policyPublic() *policy.Public {
	return &policy.Public{Tools: p.Tools, Prompts: p.Prompts, ResourceURIs: p.ResourceURIs, Methods: p.Methods}
}

// unmarshalPublic reads the `public` block:
//
//	public {
//		tool         <name-pattern...>
//		prompt       <name-pattern...>
//		resource_uri <uri-pattern...>
//		method       <jsonrpc-method...>
//	}
func unmarshalPublic(d *caddyfile.Dispenser) (*PublicOps, error) {
	if d.NextArg() {
		return nil, d.Errf("public: takes no value, only a block")
	}
	p := new(PublicOps)
	nesting := d.Nesting()
	for d.NextBlock(nesting) {
		kind := d.Val()
		var dst *[]string
		switch kind {
		case "tool":
			dst = &p.Tools
		case "prompt":
			dst = &p.Prompts
		case "resource_uri":
			dst = &p.ResourceURIs
		case "method":
			dst = &p.Methods
		default:
			return nil, d.Errf("public: unrecognized subdirective %q (tool, prompt, resource_uri or method)", kind)
		}
		args := d.RemainingArgs()
		if len(args) == 0 {
			return nil, d.Errf("public: %s: needs at least one pattern", kind)
		}
		if slices.Contains(args, "") {
			return nil, d.Errf("public: %s: empty pattern", kind)
		}
		if d.NextBlock(nesting + 1) {
			return nil, d.Errf("public: %s: takes no block", kind)
		}
		*dst = append(*dst, args...)
	}
	if err := p.Validate(); err != nil {
		return nil, d.WrapErr(err)
	}
	return p, nil
}
