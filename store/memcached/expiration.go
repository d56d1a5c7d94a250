package memcached

import (
	"fmt"
	"math"
	"time"
)

// maxRelativeExpiration is memcached's limit for relative expirations
// (30 days); larger values are read as absolute Unix times.
const maxRelativeExpiration = 30 * 24 * 60 * 60

// clockSlack is the seconds expiration adds to a TTL for memcached's clock
// lag (under two seconds).
const clockSlack = 2

// expiration converts a TTL to memcached's expiration: whole seconds,
// rounded up, plus two, and an absolute Unix time beyond 30 days.
//
// memcached's clock (current_time) is whole seconds, set by a timer that
// is re-armed for one second after each tick, so its phase drifts against
// the second boundaries: when one tick falls just before a boundary and
// the next just after the following one, the clock stays one value for
// almost two seconds. An item stored then with an expiration of n seconds
// lives only a little more than n - 2 seconds (CI saw a 1 s session,
// stored with 2, gone after 979 ms). The two extra seconds make it live
// at least ttl (and at most about ttl + 5 s).
func expiration(ttl time.Duration, now time.Time) (int32, error) {
	if ttl <= 0 || ttl > 50*365*24*time.Hour {
		return 0, fmt.Errorf("%w: %v", ErrInvalidTTL, ttl)
	}
	secs := int64((ttl+time.Second-1)/time.Second) + clockSlack
	if secs <= maxRelativeExpiration {
		return int32(secs), nil
	}
	abs := now.Unix() + secs
	if abs > math.MaxInt32 {
		return 0, fmt.Errorf("%w: %v ends after 2038, beyond memcached's expiration", ErrInvalidTTL, ttl)
	}
	return int32(abs), nil
}

// remaining converts an `mg` TTL (seconds, -1 for none) back to an
// expiration, for copies restored elsewhere.
func remaining(ttl int64) int32 {
	switch {
	case ttl < 0:
		return 0
	case ttl == 0:
		return 1
	}
	exp, err := expiration(time.Duration(ttl)*time.Second, time.Now())
	if err != nil {
		return 0
	}
	return exp
}
