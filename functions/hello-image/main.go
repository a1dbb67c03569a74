// hello-image: the blueprint's example image function, an OpenFaaS-style function shipped as a
// container image rather than as Python source. It follows OpenFaaS's watchdog contract itself:
// HTTP on $port (8080), health on /_/health and /_/ready, a graceful stop on SIGTERM (the pod's
// preStop and terminationGracePeriodSeconds give it time), and every other path is the function.
// The standard library only, built statically (CGO_ENABLED=0): the image is this one file.
package main

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// The request body a call may send at most; OpenFaaS's watchdogs bound it too.
const maxBody = 1 << 20

func handle(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		http.Error(w, "cannot read the body: "+err.Error(), http.StatusBadRequest)
		return
	}
	host, _ := os.Hostname()
	answer := map[string]any{
		"function": "hello-image",
		"greeting": "hello from an image function",
		"method":   r.Method,
		"path":     r.URL.Path,
		"query":    r.URL.RawQuery,
		"echo":     string(body),
		"instance": host,
		"node":     os.Getenv("EDGEFAAS_NODE_NAME"),
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(answer)
}

func healthy(w http.ResponseWriter, _ *http.Request) {
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("OK"))
}

func main() {
	port := os.Getenv("port")
	if port == "" {
		port = "8080"
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/_/health", healthy)
	mux.HandleFunc("/_/ready", healthy)
	mux.HandleFunc("/", handle)
	server := &http.Server{Addr: ":" + port, Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		// Calls in flight finish; the pod's grace period bounds how long that may take.
		ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
		defer cancel()
		_ = server.Shutdown(ctx)
	}()
	log.Printf("hello-image listening on :%s", port)
	if err := server.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
