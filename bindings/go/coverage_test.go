package bp

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Every function of bp.h is called by the binding: a function added to the C API without a Go
// wrapper fails here.
func TestEveryCFunctionIsWrapped(t *testing.T) {
	header, err := os.ReadFile("../../include/bp.h")
	ok(t, err)
	declared := regexp.MustCompile(`(?m)^[a-z_]+[ *]+(bp_[a-z0-9_]+)\(`).FindAllStringSubmatch(string(header), -1)
	if len(declared) < 100 {
		t.Fatalf("found only %d functions in bp.h", len(declared))
	}
	sources, err := filepath.Glob("*.go")
	ok(t, err)
	var code strings.Builder
	for _, s := range sources {
		if !strings.HasSuffix(s, "_test.go") {
			b, err := os.ReadFile(s)
			ok(t, err)
			code.Write(b)
		}
	}
	for _, d := range declared {
		if !strings.Contains(code.String(), "C."+d[1]+"(") {
			t.Errorf("%s has no Go wrapper", d[1])
		}
	}
}
