// Command ajaxburst shows the session modes in a browser: its page fires 20
// parallel fetch() calls at exclusive, read-only and lock-free endpoints of
// one session and shows what came back.
//
//	go run ./examples/ajaxburst -addr 127.0.0.1:8080
//
// Exclusive calls run one at a time (the page checks the most that ever
// overlapped: 1), and every one of their increments survives; read-only
// calls take no lock, wait only while a writer holds the session, and
// cannot write (a writer may start while earlier readers still run);
// lock-free calls never wait and each keeps its own key.
package main

import (
	"flag"
	"log"
	"net/http"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	work := flag.Duration("work", 20*time.Millisecond, "how long each call works (an exclusive one while it holds the session's lock)")
	flag.Parse()

	a, err := newApp(appConfig{Work: *work})
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()
	log.Printf("ajaxburst: open http://%s/", *addr)
	srv := &http.Server{Addr: *addr, Handler: a, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
