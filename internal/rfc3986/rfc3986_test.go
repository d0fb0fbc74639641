package rfc3986

import "testing"

func TestUnreservedAndHex(t *testing.T) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		want := 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-' || b == '.' || b == '_' || b == '~'
		if Unreserved(b) != want {
			t.Errorf("Unreserved(%q) = %v", b, !want)
		}
		_, upper := UpperHexVal(b)
		_, any := HexVal(b)
		if upper != ('0' <= b && b <= '9' || 'A' <= b && b <= 'F') || any != (upper || 'a' <= b && b <= 'f') {
			t.Errorf("%q: upper %v, any %v", b, upper, any)
		}
	}
	if v, _ := HexVal('f'); v != 15 {
		t.Errorf("HexVal('f') = %d", v)
	}
}

func TestNormalizePercent(t *testing.T) {
	for in, want := range map[string]string{
		"/a%2fb":   "/a%2Fb",
		"/%7euser": "/~user",
		"/%41%62":  "/Ab",
		"/100%":    "/100%",
		"/%zz":     "/%zz",
		"/plain":   "/plain",
		"/%e2%82":  "/%E2%82",
	} {
		if got := NormalizePercent(in); got != want {
			t.Errorf("NormalizePercent(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRemoveDotSegments(t *testing.T) {
	for in, want := range map[string]string{
		"/a/b/../c":  "/a/c",
		"/a/./b":     "/a/b",
		"/a/b/..":    "/a/",
		"/../a":      "/a",
		"/a/b/.":     "/a/b/",
		"/no/dots":   "/no/dots",
		"/a.b/c..d/": "/a.b/c..d/",
	} {
		if got := RemoveDotSegments(in); got != want {
			t.Errorf("RemoveDotSegments(%q) = %q, want %q", in, got, want)
		}
	}
}
