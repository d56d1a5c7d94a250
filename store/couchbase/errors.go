package couchbase

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/couchbase/gocb/v2"
	"github.com/couchbase/gocbcore/v10"

	"github.com/sessionlock/sessionlock/provider"
)

// Errors of this package. Operations report the Store contract's sentinels
// (provider.ErrNotFound, ...); these cover what the contract has no name for.
var (
	// ErrInvalidConfig is wrapped by New when the Config is unusable.
	ErrInvalidConfig = errors.New("couchbase: invalid config")
	// ErrInvalidKey is wrapped when a key cannot be a Couchbase document
	// id: empty, not UTF-8, or longer than MaxKeyLen bytes with the prefix.
	ErrInvalidKey = errors.New("couchbase: invalid key")
	// ErrReplicaCAS is wrapped (with provider.ErrUnavailable) when
	// CompareAndSwap is given ReplicaCAS, the token of a replica read.
	ErrReplicaCAS = errors.New("couchbase: cas token of a replica read cannot be used for a write")
)

// sentinelFor returns the Store sentinel a gocb error stands for.
//
//	document not found                       -> provider.ErrNotFound
//	document exists (Insert)                 -> provider.ErrExists
//	CAS mismatch                             -> provider.ErrCASConflict
//	document locked (see FailFastRetryStrategy) -> provider.ErrCASConflict
//	value too large                          -> provider.ErrTooLarge
//	cluster closed                           -> provider.ErrClosed
//	timeouts (ambiguous or not), cancelled requests, sockets closed,
//	  service or node unreachable, circuit breaker open, temporary failure,
//	  overload, durability impossible or ambiguous -> provider.ErrUnavailable
//	sub-document path errors, document not JSON -> provider.ErrCorrupt
//	anything else                            -> provider.ErrServer
//
// A write whose outcome the error leaves unknown (isAmbiguous) is not
// mapped here: Add and CompareAndSwap settle it (resolve), Touch and Delete
// report provider.ErrOutcomeUnknown.
//
// A locked document is reported as a CAS conflict because, for the
// provider, it is one: the document changed hands outside its CAS loop and
// the write did not happen; the provider re-reads and decides again.
//
// For the record of which error gocb returns for what (gocbcore v10.9.3,
// errmapcomponent.go, translateMemdError): KEY_EEXISTS is ErrCasMismatch
// for a Replace and for a MutateIn with a CAS, ErrDocumentExists otherwise;
// gocb turns the MutateIn's ErrCasMismatch back into ErrDocumentExists
// (gocb v2.12.4, kvprovider_coresubdoc.go, internalMutateIn, GOCBC-1019),
// so swap treats both as a CAS conflict. SUBDOC_DOC_NOT_JSON is
// ErrValueNotJSON (the later ErrDocumentNotJSON case of the same status is
// never reached).
func sentinelFor(err error) error {
	switch {
	case errors.Is(err, gocb.ErrDocumentNotFound):
		return provider.ErrNotFound
	case errors.Is(err, gocb.ErrDocumentExists):
		return provider.ErrExists
	case errors.Is(err, gocb.ErrCasMismatch), errors.Is(err, gocb.ErrDocumentLocked):
		return provider.ErrCASConflict
	case errors.Is(err, gocb.ErrValueTooLarge):
		return provider.ErrTooLarge
	case errors.Is(err, gocb.ErrShutdown), errors.Is(err, gocbcore.ErrShutdown):
		return provider.ErrClosed
	case errors.Is(err, gocb.ErrTimeout), // ambiguous and unambiguous timeouts wrap it
		errors.Is(err, gocb.ErrRequestCanceled),
		errors.Is(err, context.Canceled),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, gocbcore.ErrSocketClosed),
		errors.Is(err, gocbcore.ErrMemdClientClosed),
		errors.Is(err, gocb.ErrServiceNotAvailable),
		errors.Is(err, gocb.ErrCircuitBreakerOpen),
		errors.Is(err, gocb.ErrTemporaryFailure),
		errors.Is(err, gocb.ErrOverload),
		errors.Is(err, gocb.ErrDurabilityAmbiguous),
		errors.Is(err, gocb.ErrDurabilityImpossible),
		errors.Is(err, gocb.ErrDurableWriteInProgress),
		errors.Is(err, gocb.ErrDurableWriteReCommitInProgress):
		return provider.ErrUnavailable
	case errors.Is(err, gocb.ErrPathNotFound),
		errors.Is(err, gocb.ErrPathMismatch),
		isNotJSON(err),
		errors.Is(err, gocb.ErrValueInvalid):
		return provider.ErrCorrupt
	default:
		return provider.ErrServer
	}
}

// isNotJSON reports whether err is the server's SUBDOC_DOC_NOT_JSON: a
// sub-document operation on a document that is not JSON (for this store, a
// binary document). gocbcore reports it as ErrValueNotJSON, in a
// KeyValueError when it is the status of the whole request and in a
// SubDocumentError when it is the status of the one spec; ErrDocumentNotJSON
// is matched as well should a later gocbcore use the other name.
func isNotJSON(err error) bool {
	return errors.Is(err, gocb.ErrValueNotJSON) || errors.Is(err, gocb.ErrDocumentNotJSON)
}

// isCASMismatch reports whether a conditional write failed because the
// document has another CAS: ErrCasMismatch, or ErrDocumentExists, which
// gocb reports for a MutateIn (see sentinelFor) and which a Replace or a
// MutateIn with StoreSemanticsReplace cannot mean otherwise.
func isCASMismatch(err error) bool {
	return errors.Is(err, gocb.ErrCasMismatch) || errors.Is(err, gocb.ErrDocumentExists)
}

// isAmbiguous reports whether err leaves the outcome of a write unknown:
// the request may have reached the server and been applied. Unambiguous
// timeouts, open circuit breakers and unreachable services mean the write
// was never sent.
func isAmbiguous(err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, gocb.ErrUnambiguousTimeout):
		return false
	case errors.Is(err, gocb.ErrAmbiguousTimeout),
		errors.Is(err, gocb.ErrTimeout),
		errors.Is(err, gocb.ErrDurabilityAmbiguous),
		errors.Is(err, gocb.ErrRequestCanceled),
		errors.Is(err, context.Canceled),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, gocbcore.ErrSocketClosed),
		errors.Is(err, gocbcore.ErrMemdClientClosed):
		return true
	}
	return false
}

// isUnreachable reports whether a read failed because the node owning the
// key could not be reached (as opposed to answering "not found", or
// answering "busy"): the case in which Get may fall back to a replica.
//
// A busy node is not unreachable: a temporary failure (the server's
// TMPFAIL or BUSY), a client-side overload (the connection's queue is full)
// and a timeout while gocb retried for one of these reasons all mean the
// node answers, and a replica read would add a second KV timeout for a
// stale answer. A cancelled request is the caller's doing.
func isUnreachable(err error) bool {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, gocb.ErrRequestCanceled),
		errors.Is(err, gocb.ErrTemporaryFailure), errors.Is(err, gocb.ErrOverload):
		return false
	case errors.Is(err, gocb.ErrTimeout):
		var te *gocb.TimeoutError
		if errors.As(err, &te) {
			for _, r := range te.RetryReasons {
				if isBusyReason(r) {
					return false
				}
			}
		}
		return true
	}
	return errors.Is(err, gocb.ErrServiceNotAvailable) ||
		errors.Is(err, gocb.ErrCircuitBreakerOpen) ||
		errors.Is(err, gocbcore.ErrSocketClosed) ||
		errors.Is(err, gocbcore.ErrMemdClientClosed)
}

// isBusyReason reports whether gocb retried a request because the node
// answered that it is busy, or because the client's own queue to it was
// full: reasons that say the node is reachable.
func isBusyReason(r gocb.RetryReason) bool {
	if r == nil {
		return false
	}
	switch r.Description() {
	case gocb.KVTemporaryFailureRetryReason.Description(),
		gocb.KVLockedRetryReason.Description(),
		gocb.KVSyncWriteInProgressRetryReason.Description(),
		gocb.KVSyncWriteRecommitInProgressRetryReason.Description(),
		gocbcore.PipelineOverloadedRetryReason.Description():
		return true
	}
	return false
}

// wrapErr turns an error of a gocb operation into the store's error: it
// wraps the Store sentinel and the gocb error (so errors.Is matches both,
// e.g. provider.ErrCASConflict and gocb.ErrDocumentLocked), and the
// caller's context error when the context ended. Errors that already wrap
// a Store sentinel are returned as they are.
func wrapErr(ctx context.Context, op, id string, err error) error {
	if err == nil {
		return nil
	}
	if hasSentinel(err) {
		return err
	}
	s := sentinelFor(err)
	if cerr := ctx.Err(); cerr != nil && errors.Is(s, provider.ErrUnavailable) && !errors.Is(err, cerr) {
		return fmt.Errorf("couchbase: %s: %w: %w: %w", op, s, cerr, redacted{err, id})
	}
	return fmt.Errorf("couchbase: %s: %w: %w", op, s, redacted{err, id})
}

// hasSentinel reports whether err already wraps one of the Store's
// sentinels (a decoding error of ours, a replica-token refusal, ...).
func hasSentinel(err error) bool {
	for _, s := range []error{provider.ErrNotFound, provider.ErrExists, provider.ErrCASConflict,
		provider.ErrTooLarge, provider.ErrUnavailable, provider.ErrServer, provider.ErrCorrupt, provider.ErrClosed,
		provider.ErrOutcomeUnknown} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// redacted wraps a gocb error so that its message leaves out the document
// id, which holds the session id: gocb and gocbcore print it in their
// errors, and session ids must not reach logs. errors.Is and errors.As see
// the wrapped error unchanged.
type redacted struct {
	err error
	id  string
}

func (r redacted) Unwrap() error { return r.err }

func (r redacted) Error() string {
	msg := r.err.Error()
	if len(r.id) < 4 { // too short to be a session key, and to replace safely
		return msg
	}
	msg = strings.ReplaceAll(msg, r.id, "<key>")
	if q, err := json.Marshal(r.id); err == nil && len(q) > 2 {
		msg = strings.ReplaceAll(msg, string(q[1:len(q)-1]), "<key>")
	}
	return msg
}
