package prometheus_test

import (
	"log"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sessionlock/sessionlock/middleware"
	sessionprom "github.com/sessionlock/sessionlock/middleware/prometheus"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// The collector is the Manager's Observer and, through its StoreEvent
// method, the store's OnEvent; LogEvents logs the store events too.
func Example() {
	metrics := sessionprom.New()
	prometheus.MustRegister(metrics)
	obs := middleware.Observers(metrics, middleware.LogEvents(slog.Default()))

	store, err := memcached.New(memcached.Config{
		Nodes:   []string{"10.0.0.1:11211", "10.0.0.2:11211"},
		OnEvent: obs.StoreEvent, // node down, failover, node up, repair
	})
	if err != nil {
		log.Fatal(err)
	}
	p, err := provider.New(store, provider.Config{})
	if err != nil {
		log.Fatal(err)
	}
	mgr, err := middleware.New(middleware.Config{Provider: p, Observer: obs})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.Handler())
	mux.Handle("/", mgr.Handler(http.NotFoundHandler()))
	log.Fatal(http.ListenAndServe(":8080", mux))
}
