// Package sim is a seeded fault simulation of memcached nodes at the
// protocol level: in-memory nodes that speak memcached's text and meta
// commands behind memcached.Config.DialContext, so the real memcached
// Store, provider and lock code run unchanged over them inside
// testing/synctest bubbles; faults as scheduled events (flush, restart,
// kill, pause, partition, delay, pause of an app server, and double
// faults); a workload of locked increments, reads and lock-free writes; and
// a history checker (Check) for the invariants of docs/protocol.md, with
// porcupine for the linearizability of counter reads. See
// docs/simulation.md.
package sim
