// CGI hello world on Go's standard net/http/cgi: a peer for scripts/bench-cgi.sh.
package main

import (
	"io"
	"net/http"
	"net/http/cgi"
	"os"
)

func main() {
	err := cgi.Serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", "14")
		io.WriteString(w, "Hello, world!\n")
	}))
	if err != nil {
		os.Exit(1)
	}
}
