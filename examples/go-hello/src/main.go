// go-hello prints a greeting naming the architecture it was built for.
//
//	hello                  prints the greeting
//	hello -expect TEXT     prints it, then exits 1 unless it is TEXT
//
// With GO_HELLO_FAIL set to anything but the empty string, -expect fails
// whatever the greeting: a test that is made to fail.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
)

func greeting() string {
	return fmt.Sprintf("hello from go-hello on %s/%s", runtime.GOOS, runtime.GOARCH)
}

func main() {
	expect := flag.String("expect", "", "exit 1 unless the greeting is this text")
	flag.Parse()
	got := greeting()
	fmt.Println(got)
	if *expect == "" {
		return
	}
	if os.Getenv("GO_HELLO_FAIL") != "" {
		fmt.Println("FAIL: GO_HELLO_FAIL is set")
		os.Exit(1)
	}
	if got != *expect {
		fmt.Printf("FAIL: expected %q\n", *expect)
		os.Exit(1)
	}
	fmt.Println("ok")
}
