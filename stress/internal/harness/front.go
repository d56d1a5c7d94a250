package harness

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// headerProxyError marks a response made by the round-robin itself because
// the app server it chose could not be reached.
const headerProxyError = "X-Stress-Proxy-Error"

// front is the load balancer in front of several app servers: an HTTP
// reverse proxy that sends each request to the next live server in turn,
// as a round-robin balancer in front of a web farm does.
type front struct {
	targets []*url.URL
	down    []atomic.Bool
	next    atomic.Uint64
	proxy   *httputil.ReverseProxy
	tr      *http.Transport

	srv *http.Server
	ln  net.Listener
	wg  sync.WaitGroup
}

// startFront listens on a free 127.0.0.1 port and balances over addrs
// ("host:port").
func startFront(addrs []string) (*front, error) {
	f := &front{down: make([]atomic.Bool, len(addrs))}
	for _, a := range addrs {
		f.targets = append(f.targets, &url.URL{Scheme: "http", Host: a})
	}
	f.tr = &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: 512,
		IdleConnTimeout:     time.Minute,
	}
	f.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(f.pick())
			pr.Out.Host = pr.In.Host
		},
		Transport: f.tr,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			w.Header().Set(headerProxyError, "unreachable")
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f.ln = ln
	f.srv = &http.Server{Handler: f.proxy, ReadHeaderTimeout: 10 * time.Second}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		_ = f.srv.Serve(ln)
	}()
	return f, nil
}

// pick returns the next target that is not marked down.
func (f *front) pick() *url.URL {
	n := uint64(len(f.targets))
	for range n {
		i := f.next.Add(1) % n
		if !f.down[i].Load() {
			return f.targets[i]
		}
	}
	return f.targets[f.next.Load()%n]
}

// markDown takes server i out of the rotation.
func (f *front) markDown(i int) { f.down[i].Store(true) }

// URL returns the balancer's base URL.
func (f *front) URL() string { return "http://" + f.ln.Addr().String() }

// Close stops the balancer.
func (f *front) Close() error {
	err := f.srv.Close()
	f.wg.Wait()
	f.tr.CloseIdleConnections()
	return err
}
