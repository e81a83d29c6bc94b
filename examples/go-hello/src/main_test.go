package main

import (
	"os"
	"runtime"
	"testing"
)

// The package's own test: `go test` builds it into a binary in the
// sandbox's /tmp and runs it there. GO_HELLO_FAIL makes it fail too.
func TestGreetingNamesItsPlatform(t *testing.T) {
	want := "hello from go-hello on " + runtime.GOOS + "/" + runtime.GOARCH
	if got := greeting(); got != want {
		t.Fatalf("greeting() = %q, want %q", got, want)
	}
	if os.Getenv("GO_HELLO_FAIL") != "" {
		t.Fatal("GO_HELLO_FAIL is set")
	}
}
