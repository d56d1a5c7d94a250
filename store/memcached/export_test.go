package memcached

import (
	"context"
	"sync"
	"time"
)

// SetTestHooks installs functions called while a CompareAndSwap is between
// its primary and backup writes (afterPrimaryWrite) and while a repair has
// read the copies but written nothing (afterRepairRead). Set them before
// the Store is used concurrently.
func SetTestHooks(s *Store, afterPrimaryWrite, afterRepairRead func(key string)) {
	s.hooks = testHooks{afterPrimaryWrite: afterPrimaryWrite, afterRepairRead: afterRepairRead}
}

// SetAppendWithoutTouch makes CompareAndAppend send its append without the
// touch that follows it: a deliberately broken variant, whose appends
// leave the key's expiry as it was (memcached's append keeps it).
func SetAppendWithoutTouch(s *Store) { s.hooks.appendNoTouch = true }

// SetAppendTouchLostOK makes CompareAndAppend report an append whose
// touch found the key gone (the item expired between the two commands) as
// done, as it did before (the broken variant of
// TestAppendTouchFindsKeyGone).
func SetAppendTouchLostOK(s *Store) {
	eachMeta(s, func(c *metaClient) { c.touchLostOK = true })
}

// SetAppendTouchErrorOK makes CompareAndAppend report an append whose
// touch got an error reply (SERVER_ERROR, CLIENT_ERROR) as done without
// sending the touch again, its TTL not set, as it did before
// (review-oc31 F4; the broken variant of TestAppendTouchError).
func SetAppendTouchErrorOK(s *Store) {
	eachMeta(s, func(c *metaClient) { c.touchErrOK = true })
}

// WitnessCandidates returns the addresses of key's three candidates in
// BackupWitness mode (c0, c1, c2: home primary, secondary, witness).
func WitnessCandidates(s *Store, key string) []string {
	cs := s.wit.candidates(key)
	return []string{cs[0].addr, cs[1].addr, cs[2].addr}
}

// SetEvictionCheck sets how often a BackupWitness Store reads its nodes'
// evictions counters (default 10 s).
func SetEvictionCheck(s *Store, every time.Duration) {
	s.wit.mu.Lock()
	s.wit.evictEvery = every
	s.wit.mu.Unlock()
}

// EvictionChecks returns how many times s has read its nodes' evictions
// counters.
func EvictionChecks(s *Store) int64 { return s.wit.evictChecks.Load() }

// Pipelined reports whether s's nodes multiplex their operations over
// shared connections (Config.Conns).
func Pipelined(s *Store) bool {
	for _, n := range s.nodes {
		if n.meta.pipe == nil {
			return false
		}
	}
	return true
}

// PipelineHandoffs returns how many requests on s's live pipelined
// connections had their reply read by a connection's reader goroutine and
// handed to their waiter, rather than read by their caller.
func PipelineHandoffs(s *Store) uint64 {
	var n uint64
	for _, nd := range s.nodes {
		if nd.meta.pipe == nil {
			continue
		}
		for i := range nd.meta.pipe.slots {
			sl := &nd.meta.pipe.slots[i]
			sl.mu.Lock()
			if sl.conn != nil {
				n += sl.conn.handedOff.Load()
			}
			sl.mu.Unlock()
		}
	}
	return n
}

// CloseIdle closes the idle pooled connections to every node of s: the
// next command to a node dials it.
func CloseIdle(s *Store) {
	eachMeta(s, (*metaClient).closeIdle)
}

// SetBackupWholeWrites makes CompareAndAppend decline for every key with a
// backup copy, as the Store did before backup appends (8efee5d): such keys
// are written whole.
func SetBackupWholeWrites(s *Store) { s.hooks.backupAppendOff = true }

// SetBackupAppendNoWhole makes a backup append that did not land stay
// undone: a deliberately broken variant, whose backup copy misses the
// lock changes appended while it had diverged.
func SetBackupAppendNoWhole(s *Store) { s.hooks.bakAppendNoWhole = true }

// ForgetBackupCopies makes s forget every backup copy it wrote or read
// (and every pair of copies): its next write of any key completes the
// backup write after the primary write, as a Store that did not write or
// read the key last does.
func ForgetBackupCopies(s *Store) { s.baks.clear() }

// RepairKey runs the repair client's R9 on key once, synchronously (as
// the background loop does for a queued key).
func RepairKey(s *Store, key string) { s.wit.repairKey(context.Background(), key) }

// TimeoutExp is the expiration a client write of a session timeout of t
// seconds gets (the cap of every internal TTL).
func TimeoutExp(t uint32) int32 { return timeoutExp(t) }

// SetWaitingFailed sets a function called whenever a call of a
// BackupWitness Store starts to wait for node addr's verdict (§9: an
// anomaly read's silent copy, waiting until FailoverAfter has passed
// since the node's first unanswered command). Set it before s is used
// concurrently.
func SetWaitingFailed(s *Store, addr string, f func()) {
	for _, n := range s.nodes {
		if n.addr == addr {
			n.wh.mu.Lock()
			n.wh.waiting = f
			n.wh.mu.Unlock()
		}
	}
}

// SetBeforeTouchCopies calls hook when the witness scheme has read a
// record and is about to touch its two data copies (touchCopies).
func SetBeforeTouchCopies(s *Store, hook func(key string)) { s.hooks.beforeTouchCopies = hook }

// SetTouchNoFlags is review 5's m2 broken variant: touchCopies leaves a
// witness it touched with the data copies' TTL.
func SetTouchNoFlags(s *Store) { s.hooks.touchNoFlags = true }

// SetRepairCompletesInFlight is review 5's m4 broken variant: the repair
// client completes a write in flight the first time it sees it.
func SetRepairCompletesInFlight(s *Store) { s.hooks.repairCompletesInFlight = true }

// SetWitnessWholeWrites makes s's witness scheme decline CompareAndAppend,
// as before witness appends: every lock change is written whole.
func SetWitnessWholeWrites(s *Store) { s.hooks.witnessWholeWrites = true }

// SetAppendNoUntouch is a broken variant: a witness append's touch that
// landed on another record keeps the caller's TTL there.
func SetAppendNoUntouch(s *Store) { s.hooks.appendNoUntouch = true }

// SetUndoWholeBase is a broken variant: the witness undo writes the base
// re-encoded whole (its trailers compacted) instead of its exact bytes.
func SetUndoWholeBase(s *Store) { s.hooks.undoWholeBase = true }

// MaxTrailers bounds the trailers of a witness data item (witness_append.go).
const MaxTrailers = maxTrailers

// SetTTLBeforeTouch is a broken variant: the witness scheme's touching
// reads ask for the remaining TTL before the touch (`t` before `T`), as
// they did before.
func SetTTLBeforeTouch(s *Store) { s.hooks.ttlBeforeTouch = true }

// SetAppendTwoTrips makes the witness scheme's appends send their touch
// only once the append is stored (the second round trip), whatever the
// handle's age.
func SetAppendTwoTrips(s *Store) { s.hooks.appendTwoTrips = true }

// SetTakeoverHook installs a function called when an Add over a lone
// witness (R8) has re-stamped the blanks and written nothing else yet.
func SetTakeoverHook(s *Store, f func(key string)) { s.hooks.takeoverPoisoned = f }

// SetTakeoverNoPoison makes an Add over a lone witness skip the blanks'
// re-stamp: a deliberately broken variant (the model's TakeoverNoPoison).
func SetTakeoverNoPoison(s *Store) { s.hooks.takeoverNoPoison = true }

// SetTakeoverInPlace makes s's Adds over a lone witness CAS their record
// over the witness with its read token after the re-stamps, not blank it
// first (the broken variant of review-lonewit B1; the model's
// TakeoverInPlace).
func SetTakeoverInPlace(s *Store) { s.hooks.takeoverInPlace = true }

// SetAddNoResolve makes an Add report a CAS step with no reply as unknown
// without reading the candidate again: the code before (the lone witness
// of run 12).
func SetAddNoResolve(s *Store) { s.hooks.addNoResolve = true }

// SetAddNoWaitFailed makes s the code before: an Add whose read finds one
// candidate silent, not yet held failed, fails ErrUnavailable at once
// instead of waiting for the failure detection (FailoverAfter since the
// node's first unanswered command) as R4.5's anomaly read does.
func SetAddNoWaitFailed(s *Store) { s.hooks.addNoWaitFailed = true }

// WitnessItem returns the bytes and client flags of a witness item of
// configuration (e, cands p, q), as R8's or R9's witness CAS writes them:
// a test places a lone witness of another configuration with them.
func WitnessItem(s *Store, e uint32, p, q uint8) (value []byte, flags uint32) {
	return s.wit.newEnvelope(config{E: e, P: p, Q: q}, 1, 60).Append(nil), kindWitness
}

// SetAppendFullByPresence is a broken variant (the code before): a
// witness append answered NS is taken as "too large" whenever the look
// after it finds any item under the key, a reader's blank made after a
// flush included.
func SetAppendFullByPresence(s *Store) { s.hooks.appendFullByPresence = true }

// SetAdoptNoTouch is a broken variant (review-lonewit M1, the code
// before): R9 adopts a witness of the session's configuration, and clears
// nowit, without touching it, whatever TTL it has left.
func SetAdoptNoTouch(s *Store) { s.hooks.adoptNoTouch = true }

// SetNoPromise is R7 and R3's write failover before R11, a broken variant
// (the model's NoPromise): a new epoch is its base's plus one, nothing is
// promised before a fence, and promises are not read.
func SetNoPromise(s *Store) { s.hooks.noPromise = true }

// SetNotFoundUnfenced is R4.1's "not found" before review-ballot m4's fix,
// a broken variant (the model's NotFoundUnfenced): it answers without
// first re-stamping the blanks it counted.
func SetNotFoundUnfenced(s *Store) { s.hooks.notFoundUnfenced = true }

// SetAfterPromise calls f after a decision (R7, a re-ballot, R3's write
// failover) stored its promise, before its fence is sent.
func SetAfterPromise(s *Store, f func(key string)) { s.hooks.afterPromise = f }

// SetRepairQueueOff makes s queue no key for R9 (its background repair
// client then works only the witness-less list): a test runs RepairKey
// itself.
func SetRepairQueueOff(s *Store) { s.hooks.repairQueueOff = true }

// SetDecisionNoTouch restores the code before review-r11 m3: the
// decisions of a touching call (GetAndTouch, Touch) keep the t their
// anomaly read saw, as every other call's do.
func SetDecisionNoTouch(s *Store) { s.hooks.decisionNoTouch = true }

// SetHalfEstablishedWaits restores the code before the simulation's
// expiry seed 11238: a half-established failover (a pending fence and the
// copy it made) whose copy is expiring is not completed; the call waits
// for the copies to expire.
func SetHalfEstablishedWaits(s *Store) { s.hooks.halfEstablishedWaits = true }

// SetNoBackoff restores the code before review-r11 m4: a refused decision
// is followed by the next anomaly read at once.
func SetNoBackoff(s *Store) { s.hooks.noBackoff = true }

// SetBackoffHook installs f, called when a resolve call is about to back
// off d after its nth refused decision.
func SetBackoffHook(s *Store, f func(key string, n int, d time.Duration)) { s.hooks.backoff = f }

// SetBuryCreation restores the code before review-lonewit m4's fix (the
// model's BuryCreationFenced): R4.1 buries a creation's lone copy too,
// after fencing its two empty peers, and answers not found.
func SetBuryCreation(s *Store) { s.hooks.buryCreation = true }

// SetKeepOldWitness makes s the code before R14: a lone witness of an
// expired session stays until it expires.
func SetKeepOldWitness(s *Store) { s.hooks.keepOldWitness = true }

// SetBuryAnyAge is a broken variant of R14: it buries a lone witness
// whatever its age.
func SetBuryAnyAge(s *Store) { s.hooks.buryAnyAge = true }

// SetBuryTouched makes s the code before the third session of
// 2026-12-01: a touching call's (GetAndTouch, Touch) R14 goes by the age
// its anomaly read saw, as if its own witness touch had landed first.
func SetBuryTouched(s *Store) { s.hooks.buryTouched = true }

// SetHoldWitnessTouch makes every witness touch whose reply its call does
// not wait for (R2's, R3's) be sent on a goroutine of its own once f
// returns: a GetAndTouch's anomaly read then reaches the witness before
// its touch does.
func SetHoldWitnessTouch(s *Store, f func(key string)) { s.hooks.holdWitnessTouch = f }

// SetBuryUnfenced is a broken variant of R14 (the model's R14Unfenced):
// it buries the witness without re-stamping the blanks first.
func SetBuryUnfenced(s *Store) { s.hooks.buryUnfenced = true }

// SetBuryFreshToken is a broken variant of R14: the burial CAS carries
// the witness's token read again just before it, not the one the
// deciding read returned.
func SetBuryFreshToken(s *Store) { s.hooks.buryFreshToken = true }

// SetBeforeBury sets a function called when R14 has re-stamped both
// blanks and is about to send its burial CAS.
func SetBeforeBury(s *Store, f func(key string)) { s.hooks.beforeBury = f }

// SetAfterAddWitness sets a function called when an Add (R8) has stored
// its witness and is about to send its data CASes.
func SetAfterAddWitness(s *Store, f func(key string)) { s.hooks.afterAddWitness = f }

// SetWitnessTouched sets a function called when the reply to a witness
// touch (R2, R3) has been read.
func SetWitnessTouched(s *Store, f func(key string)) { s.hooks.witnessTouched = f }

// SetAdoptNoFence makes s the code before review-r14 B1: R9 adopts a
// same-configuration witness for a nowit clear by a touch only.
func SetAdoptNoFence(s *Store) { s.hooks.adoptNoFence = true }

// NodeFailed reports whether s has the node at addr marked failed (§9).
func NodeFailed(s *Store, addr string) bool {
	for _, n := range s.nodes {
		if n.addr == addr {
			return n.wh.isFailed()
		}
	}
	panic("no node " + addr)
}

// SetAfterDeleteRead sets a function called when Delete has read the
// records and deleted nothing yet.
func SetAfterDeleteRead(s *Store, f func(key string)) { s.hooks.afterDeleteRead = f }

// SetDelNoRetry makes s the code before: a Delete refused on every data
// record as of another incarnation reports an unknown outcome.
func SetDelNoRetry(s *Store) { s.hooks.delNoRetry = true }

// SetUndoOtherIncUnknown makes s the code before: R3's undo of Q refused
// as of another incarnation, not sent (and not sent again by wcasAgain:
// Q changed since), reports an unknown outcome without reading both
// copies.
func SetUndoOtherIncUnknown(s *Store) { s.hooks.undoOtherIncUnknown = true }

// SetNoResume makes s the code before R8's resumption: its creations of
// unknown outcome are never resumed (their lone copy stays
// ErrUnconfirmed until it expires).
func SetNoResume(s *Store) { s.hooks.noResume = true }

// UnknownAdds returns how many creations of unknown outcome s is to
// resume.
func UnknownAdds(s *Store) int { return s.wit.repair.unknownAddCount() }

// WitlessKeys returns how many keys s's witness-less list holds.
func WitlessKeys(s *Store) int { return len(s.wit.repair.witlessKeys()) }

// SetResumeDropUnfenced makes s a broken variant of R8's resumption: a
// creation of unknown outcome found not found is dropped from the list
// without its blanks re-stamped, so its late CAS may still land.
func SetResumeDropUnfenced(s *Store) { s.hooks.resumeDropUnfenced = true }

// SetResumeAnyCopy makes s the first build of R8's resumption, a broken
// variant (review-resume B1): a lone copy of its creation on either data
// candidate is resumed, onto any blank.
func SetResumeAnyCopy(s *Store) { s.hooks.resumeAnyCopy = true }

// SetResumeAnyBlank makes s the second build of R8's resumption, a broken
// variant (review-resume-2 N1): a lone copy on the secondary is resumed
// onto any blank of the primary, also after the Add's primary CAS landed.
func SetResumeAnyBlank(s *Store) { s.hooks.resumeAnyBlank = true }

// SetResumeUnmarked makes s the third build of R8's resumption, a broken
// variant (review-resume-3 N2): the resumption's own primary CAS, its
// reply lost, leaves the creation resumable onto any blank.
func SetResumeUnmarked(s *Store) { s.hooks.resumeUnmarked = true }

// SetResumeUnsentAtP makes s the code before the fifth session of
// 2026-12-01: an Add whose primary CAS was not sent (its connection
// refused) is listed as unknown at the primary, resumed only onto the
// blank that CAS targeted, as if the CAS had been sent.
func SetResumeUnsentAtP(s *Store) { s.hooks.resumeUnsentAtP = true }

// SetResumeRestoreRefusedOnly makes s the code before rv-pk500 m1: a
// resumption whose own primary CAS was not sent (the node gone as it went
// out) keeps the creation listed onto the blank that CAS targeted, which
// the node's restart erases.
func SetResumeRestoreRefusedOnly(s *Store) { s.hooks.resumeRestoreRefusedOnly = true }

// SetCompleteOverWitness makes s the code before review-resume-4 N4's
// fix: a reader's R4.4 completes a creation stopped at its secondary over
// a witness of another configuration on its primary, as over any present
// record, instead of re-balloting it.
func SetCompleteOverWitness(s *Store) { s.hooks.completeOverWitness = true }

// SetReballotKeepsNoWit makes s the code before review-n4b F1: R11.3's
// re-ballot of a creation's record copies the record's nowit mark (none
// for a creation with its witness) instead of marking it as R7 does.
func SetReballotKeepsNoWit(s *Store) { s.hooks.reballotKeepsNoWit = true }

// SetNoWitFastPath makes s the code before review-n4b F2's fix: R2
// returns a nowit record whose two copies agree, and a plain reader's
// R4.3 returns a nowit configuration whose third node answered and queues
// R9, instead of running R9 first (the model's NoWitFastPath and
// NoWitReturnedBeforeR9 together).
func SetNoWitFastPath(s *Store) { s.hooks.nowitR2Returns, s.hooks.nowitR43Returns = true, true }

// SetNoWitR2Returns makes s's R2 the code before review-n4b F2's fix
// (its R4.3 is the fix's): a nowit record whose two copies agree is
// returned by the common read (the model's NoWitFastPath).
func SetNoWitR2Returns(s *Store) { s.hooks.nowitR2Returns = true }

// SetAppendGoneIgnored makes s the code before review-oc31 F2: in the
// witness scheme, an append stored on a data copy whose touch then
// answered EN (the copy expired, or was flushed, evicted or deleted,
// between the two) counts as stored in R3's table.
func SetAppendGoneIgnored(s *Store) { s.hooks.appendGoneIgnored = true }

// SetAppendBlankStored makes s the first fix of review-oc31 F2: an
// append's touch that finds a blank where the append stored (the copy
// gone, then a reader's get-or-blank) counts the copy stored, as a touch
// that strayed onto another item (the model's AppendStrayStored).
func SetAppendBlankStored(s *Store) { s.hooks.appendBlankStored = true }

// SetAppendCompleteUntouched makes s the code before: R3's completion
// of an append that finds the write on Q (a reader copied P's appended
// item there, with P's old life) acknowledges it without touching Q (the
// model's AppendCompleteUntouched).
func SetAppendCompleteUntouched(s *Store) { s.hooks.appendCompleteUntouched = true }

// SetAppendFailoverIgnoresPromise makes s the code before the cold
// review of the merged rules' A2: the write failover that follows R3's
// completion's touch finding Q gone (an append's write a reader completed
// onto Q) re-reads P and fences it with that read's token without
// checking for a promise on P above the write's epoch (R11.3).
func SetAppendFailoverIgnoresPromise(s *Store) { s.hooks.appendFailoverNoPromise = true }

// SetWitnessAppendTouchErrorOK makes s the code before (W3 of the cold
// review of the append-gone fixes): in the witness scheme, an append
// stored whose touch got an error reply is a success with no TTL set,
// and no touch is sent again.
func SetWitnessAppendTouchErrorOK(s *Store) { s.hooks.appendTouchErrorOK = true }

// SetAppendGoneAsMissing makes s the first fix of review-oc31 F2: a copy
// that took the append and was gone by its touch is missing in every row
// of R3's table, so that P gone and Q stored undoes Q and answers a
// conflict, and a gone copy beside a refused one is a conflict (the
// model's AppendGoneRefused; the cold review's W1), though a read may
// have returned the value or copied it onto the other copy.
func SetAppendGoneAsMissing(s *Store) { s.hooks.appendGoneAsMissing = true }

// SetAppendStrayStored makes s the code before: in the witness scheme,
// an append stored on a data copy whose touch then found another item
// than the append's (not a blank) counts the copy stored, with the
// append's token, whatever that item holds (the model's rStray: stored
// only when it holds this write or one built on it).
func SetAppendStrayStored(s *Store) { s.hooks.appendStrayStored = true }

// SetAppendReplacedAsGone is a broken variant: a witness append's copy
// replaced by its touch (another record, not built on the write) is a
// gone copy in every row of R3's table, so that both replaced, or
// replaced beside a gone copy, answers "not found" though the key is
// there (the model: a replaced copy never makes "not found").
func SetAppendReplacedAsGone(s *Store) { s.hooks.appendReplacedAsGone = true }

// SetAppendTieUnknown makes s the rule before the tie row: a witness
// append's copy whose touch found a rival write of the same base (it
// won the tie) is a replaced copy like any other, so beside a refused
// copy the append ends ErrOutcomeUnknown, though nothing of it survives
// (the model's AppendTieUnknown).
func SetAppendTieUnknown(s *Store) { s.hooks.appendTieUnknown = true }

// SetAppendTieLineUnknown makes s the code before: a witness append's
// secondary copy replaced before its touch by a record built on a rival
// write of the same base (not the rival itself), beside a primary that
// refused the append, is unknown, not the tie row's conflict.
func SetAppendTieLineUnknown(s *Store) { s.hooks.appendTieLineUnknown = true }

// SetAppendTieWide makes s a broken variant of the tie row (its cold
// review, rv-tieline): any data record on a witness append's copy, not
// only the rival's line, is a lost tie.
func SetAppendTieWide(s *Store) { s.hooks.appendTieWide = true }

// SetAppendTieAnyCopy is a broken variant (the tie row as first merged;
// its cold review, m1): a lost tie on P, or on both copies, beside a
// refused copy or another lost tie is a conflict too, though there the
// append was on its own primary.
func SetAppendTieAnyCopy(s *Store) { s.hooks.appendTieAnyCopy = true }

// WitnessHandle returns the data copies' memcached tokens (P first) and
// the trailers count of the witness scheme's handle id (ok false: no such
// handle).
func WitnessHandle(s *Store, id uint64) (cas [2]uint64, trailers int, ok bool) {
	h, ok := s.wit.handles.get(id)
	return [2]uint64{h.copies[0].cas, h.copies[1].cas}, h.trailers, ok
}

// WithHooks returns cfg whose Store runs set (test hooks) before New
// starts its goroutines, so that no hook is written while the repair
// loop or the scan reads it.
func WithHooks(cfg Config, set func(*Store)) Config {
	cfg.beforeStart = set
	return cfg
}

// SetR9ParallelRestamps makes s the code before: R9 sends its two
// re-stamps in parallel, so that processes running R9 on one key at once
// can each win one copy and all be refused (restampBoth).
func SetR9ParallelRestamps(s *Store) { s.hooks.r9ParallelRestamps = true }

// SetR9RestampHook makes s call h before (done false) and after (done
// true, with the re-stamp's error) each of R9's re-stamps of key; primary:
// the configuration's primary copy.
func SetR9RestampHook(s *Store, h func(key string, primary, done bool, err error)) {
	s.hooks.r9Restamp = h
}

// SetR9ClearHook makes s call h when R9 has read both data copies of key
// and is about to CAS them whole with keepExp (clearNoWit: the nowit
// clear, or a TTL split's re-stamp with the witness in place).
func SetR9ClearHook(s *Store, h func(key string)) { s.hooks.r9Clear = h }

// SetR9ExpCut makes s a broken variant: R9's whole-record rewrites (the
// nowit clear, a TTL split's re-stamp) write keepExp less cut seconds.
func SetR9ExpCut(s *Store, cut int32) { s.hooks.r9ExpCut = cut }

// SetAfterTick makes s call f each time its witness loop ends a tick.
func SetAfterTick(s *Store, f func()) { s.hooks.afterTick = f }

// SetWitlessVisitFailed makes s the code before the growth audit's fix:
// every tick visits every key of the witness-less list, also those whose
// witness node is held failed.
func SetWitlessVisitFailed(s *Store) { s.hooks.witlessVisitFailed = true }

// SetRepairRacesCalls makes the repair client decide on a key that a
// call of its own process is resolving, as the code before did (the
// simulation's expiry seed 11238: the two refused each other's decisions
// until the call hit the cap).
func SetRepairRacesCalls(s *Store) { s.hooks.repairRacesCalls = true }

// SetRepairPutsOffAll makes the repair client put off every visit of a
// key a call of its own process is resolving, without bound, and queue it
// again at once when the last such call ends: the first build of r9blank
// (rv-r9 M1: R8's resumption and the nowit clear starved under a stream
// of the process's own Gets; M2: the loop spun on the key).
func SetRepairPutsOffAll(s *Store) { s.hooks.repairPutsOffAll = true }

// SetPutOffUnbounded makes the repair client put off the decisions a call
// of its own process makes for as long as such calls resolve the key (no
// putOffBound).
func SetPutOffUnbounded(s *Store) { s.hooks.putOffUnbounded = true }

// SetPutOffR8Drop makes the repair client put off R8's drop in R4.1 (a
// creation of unknown outcome of this process found not found, fenced out
// and forgotten) too while a call of its process resolves the key: a
// broken variant (rv-r9c m2), as no call makes that decision.
func SetPutOffR8Drop(s *Store) { s.hooks.putOffR8Drop = true }

// SetPutOffRecordKept makes the repair client keep its record of a key's
// put-off visits when a visit ends without being put off or a call
// answers, and decide at the bound by count alone: r9fix's build
// (rv-r9b M1: the records leaked, one per key ever put off, and a count
// left from one episode made the next episode's first visit decide at
// once while a call resolved the key).
func SetPutOffRecordKept(s *Store) { s.hooks.putOffRecordKept = true }

// SetPutOffOutlivesEpisode makes a call of s that answers (the session,
// or not found) leave the repair client's record of the key's put-off
// visits, keeping the rest of rv-r9b M1's fix (a visit not put off
// deletes it): a record from an earlier episode still counts.
func SetPutOffOutlivesEpisode(s *Store) { s.hooks.putOffOutlivesEpisode = true }

// SetPutOffRecordAges is the code before rv-r9c m1 (r9fix2): the repair
// client counts its record of a key's put-off visits as absent once the
// last of them is more than 4 Timeouts old, and a call's answer leaves
// it. A loop that brings the re-queued visits that late restarts the
// count at each: the bound never fires.
func SetPutOffRecordAges(s *Store) { s.hooks.putOffRecordAges = true }

// SetRequeuesStack is a broken variant (rv-r9d (a), r9fix3's first
// build): ending an episode deletes a record of put-off visits whose
// re-queue is pending, so the next put-off sets a second re-queue beside
// it.
func SetRequeuesStack(s *Store) { s.hooks.requeuesStack = true }

// SetPutOffFirstKept is a broken variant (rv-r9e m1): an episode's first
// put-off on a record kept for a pending re-queue keeps the earlier
// episode's first time, so the bound (PutOffBound put-offs and a Timeout
// since the first) can fire at the new episode's fourth visit at once.
func SetPutOffFirstKept(s *Store) { s.hooks.putOffFirstKept = true }

// SetPutOffEndsAtLastCall is a broken variant (rv-r9d (g)): a call's
// answer ends the episode of its key only when no other call of the
// process resolves the key.
func SetPutOffEndsAtLastCall(s *Store) { s.hooks.putOffEndsAtLastCall = true }

// SetRequeueFired installs f, called on the timer goroutine when a
// put-off's re-queue of key fires, before it does anything (a test holds
// it there).
func SetRequeueFired(s *Store, f func(key string)) { s.hooks.requeueFired = f }

// SetRequeueDropped installs f, called when a put-off's re-queue of key
// was dropped (the repair queue full) and the drop handled (the record
// kept and the re-queue tried again later, or the record deleted).
func SetRequeueDropped(s *Store, f func(key string)) { s.hooks.requeueDropped = f }

// SetRequeueDropDeletes is the code before rv-r9d (b)'s fix: a put-off's
// re-queue that the repair queue drops deletes the key's record of
// put-off visits though a call of the process still resolves the key, so
// the next visit starts the count over.
func SetRequeueDropDeletes(s *Store) { s.hooks.requeueDropDeletes = true }

// PutOffCount returns the count of key's record of put-off visits (0:
// none).
func PutOffCount(s *Store, key string) int {
	s.wit.mu.Lock()
	defer s.wit.mu.Unlock()
	if p := s.wit.putOffs[key]; p != nil {
		return p.n
	}
	return 0
}

// PutOffRecords returns how many keys s's repair client holds a record
// of put-off visits for.
func PutOffRecords(s *Store) int {
	s.wit.mu.Lock()
	defer s.wit.mu.Unlock()
	return len(s.wit.putOffs)
}

// SetCallResolving makes each call of s that starts resolving a key (its
// anomaly reads, not the repair client's) call f first: the call counts
// as resolving the key until f returns and its reads end.
func SetCallResolving(s *Store, f func(key string)) { s.hooks.callResolving = f }

// PutOffBound is putOffBound.
const PutOffBound = putOffBound

// SetLoopVisit makes s's witness loop call f before each key it visits
// (one of the repair queue, or one listed for R9 or to be resumed).
func SetLoopVisit(s *Store, f func(key string)) { s.hooks.loopVisit = f }

// SetLongPassBlind makes a tick's pass over the witness loop's lists
// neither probe the failed nodes nor work the repair queue until the pass
// ends: the broken variant of TestLongPassProbesAndRepairs.
func SetLongPassBlind(s *Store) { s.hooks.longPassBlind = true }

// Enqueue queues key for R9, as an anomaly read does, and reports
// whether it was queued (false: the repair queue full).
func Enqueue(s *Store, key string) bool { return s.wit.repair.enqueue(key) }

// SetLandedConflict makes a BackupOn write that landed on the primary and
// was then replaced, lost or cut off there before its backup half
// completed answer ErrCASConflict, as before the sixth session's d4 (the
// broken variant of TestLandedWriteNotConflict).
func SetLandedConflict(s *Store) { s.hooks.landedConflict = true }

// SetBackupParallel makes s the code before bocontract, without its undo:
// a BackupOn write's backup half is sent in parallel with its primary half
// and stays where it landed when the primary refused the write (the
// broken variant of the unknown-outcome contract's tests,
// backup_contract_test.go).
func SetBackupParallel(s *Store) { s.hooks.backupParallel = true }

// SetAppendGoneSure makes a BackupOn CompareAndAppend whose primary copy
// was gone by its touch answer "not found" though its backup append's
// outcome is unknown, or it was refused by a copy that changed, as before
// the cold re-audit audit4 and the cold review rvbo (a broken variant of
// TestAppendGoneBackupUnknown and TestAppendGoneCarried).
func SetAppendGoneSure(s *Store) { s.hooks.appendGoneSure = true }

// SetNoBackupAfterUnknown makes a BackupOn write whose primary outcome is
// unknown send no backup half, as bocontract first did (a broken variant
// of TestUnknownPrimaryWriteOneView).
func SetNoBackupAfterUnknown(s *Store) { s.hooks.noBackupAfterUnknown = true }

// SetBeforePutBack installs f, called when a split Add's settle read both
// copies and is about to write one of them.
func SetBeforePutBack(s *Store, f func(key string)) { s.hooks.beforePutBack = f }

// SetUndoCompleteOverPromise makes the undo's completion of its stalled
// split ignore a promise on Q (a broken variant of
// TestUndoCompletionNotOverPromise).
func SetUndoCompleteOverPromise(s *Store) { s.hooks.undoCompleteOverPromise = true }

// SetCompleteOwnOverPromise makes the writer's own completion (completeOwn)
// ignore a promise on P (a broken variant of
// TestUndoCompletionNotOverPromise).
func SetCompleteOwnOverPromise(s *Store) { s.hooks.completeOwnOverPromise = true }

// SetUndoBothHeldUntouched makes an append's undo that finds both copies
// holding the write acknowledge it without touching P, as before (the
// broken variant of TestUndoBothHeldTouchesPrimary).
func SetUndoBothHeldUntouched(s *Store) { s.hooks.undoBothHeldUntouched = true }

// SetSettleOverPrimary makes a split Add's settle read the copies again
// after its CAS of the primary was refused, and put the backup copy over
// what it finds there, as before rv-d4b MJ2 (the broken variant of
// TestSettleKeepsPrimaryWrite).
func SetSettleOverPrimary(s *Store) { s.hooks.settleOverPrimary = true }

// SetUndoNoComplete makes s the code before: R3's undo refused while Q
// holds the write and P its base (a reader's completion of the write
// stalled between its re-stamp of Q and its CAS of P) reads both copies
// five times and reports an unknown outcome, never completing the write.
func SetUndoNoComplete(s *Store) { s.hooks.undoNoComplete = true }

// SetUndoStart calls f when R3's undo is about to run on key: P refused
// the write, Q stored it, and the writer's own completion read P and did
// not complete it (tests stall the writer there).
func SetUndoStart(s *Store, f func(key string)) { s.hooks.undoStart = f }

// SetSameProcessCompletes makes s the code before (§16 item 2): a call
// that sees again a write in flight that s itself is writing completes it
// at once (R4.4), without waiting for the writer's call to end.
func SetSameProcessCompletes(s *Store) { s.hooks.sameProcessCompletes = true }

// SetSplitCompletes makes s the code before §16 item 1 (R4.4′): a
// Q-ahead plain split (a write on its configuration's secondary alone,
// its parent on the primary) that a call or the repair client sees again
// is completed onto the primary, as a P-ahead one, not rolled back.
func SetSplitCompletes(s *Store) { s.hooks.splitCompletes = true }

// SetRollBackRestamped calls f when R4.4′'s roll-back of a split on key
// has re-stamped the primary and not yet sent its CAS of the secondary.
func SetRollBackRestamped(s *Store, f func(key string)) { s.hooks.rollBackRestamped = f }

// SetWriterWait calls f when a call of s (not the repair client) is about
// to wait for s's own write in flight on key to end before completing it.
func SetWriterWait(s *Store, f func(key string)) { s.hooks.writerWait = f }

// SetBeforeCompleteOwn calls f when a write of s on key was refused by its
// primary and stored by its secondary, before its own completion reads
// the primary (tests hold the writer there).
func SetBeforeCompleteOwn(s *Store, f func(key string)) { s.hooks.beforeCompleteOwn = f }

// SetUndoForgetsHeld makes s the code before: a read of P after P refused
// the write that shows P holding it (a reader's completion) or a record
// built on it is not kept; the undo is sent, and a writer that reads both
// copies again only after the session moved more than envelope.Lineage
// versions on answers ErrOutcomeUnknown (the stalled writer).
func SetUndoForgetsHeld(s *Store) { s.hooks.undoForgetsHeld = true }

// SetUndoHeldConflict makes s the code before the cold review rv-held m1:
// the undo's rows of certain conflict (replaced on both copies, later
// versions built on another write, overtaken) answer ErrCASConflict though
// a read of P showed it holding the write (the session deleted and created
// again since), and a beaten writer puts the base back on Q.
func SetUndoHeldConflict(s *Store) { s.hooks.undoHeldConflict = true }

// SetSettleLastUnread makes a split Add's settle end after its fourth
// round's write without reading the pair again, whatever that write
// did, and answer as if the copies were settled, as before rv-mj2 mn-c
// (the broken variant of TestSettleLastRoundReadAgain).
func SetSettleLastUnread(s *Store) { s.hooks.settleLastUnread = true }

// SetSettleUnbounded makes the caller of a split Add wait for its
// settle's end whatever its deadline, as before rv-d4b mn5 (the broken
// variant of TestSettleBounded).
func SetSettleUnbounded(s *Store) { s.hooks.settleUnbounded = true }

// SetSettleCut makes a split Add's settle itself end 2 Timeouts after it
// starts, or one Timeout past the caller's deadline if that comes first,
// and the caller wait for it, as at d76aa64 (the broken variant of
// TestSettleRunsPastDeadline, rv-settle S1).
func SetSettleCut(s *Store) { s.hooks.settleCut = true }

// SettleAnswerAt is settleAnswerAt: when a split Add's caller is
// answered if its settle still runs (false: when the settle ends).
func SettleAnswerAt(ctx context.Context, timeout time.Duration, waitForEnd bool) (time.Time, bool) {
	return settleAnswerAt(ctx, timeout, waitForEnd)
}

// EnterAdd counts an Add in flight as a BackupOn Add does before it sends
// anything (Close waits for it until done is called), and reports whether
// it may go on (false once s is closed; done is then nil).
func EnterAdd(s *Store) (ok bool, done func()) {
	if !s.enterAdd() {
		return false, nil
	}
	return true, s.adds.Done
}

// SetAddUntracked makes Close wait for a BackupOn Add's settle only, not
// for the Add, and the settle not start once s is closed, the Add then
// answering that its copies may differ, as before rv-settle2 R1 (the
// broken variant of TestCloseWaitsForSplitAdd).
func SetAddUntracked(s *Store) { s.hooks.addUntracked = true }

// SetClosing installs f, called by Close once it has set s closed, before
// it stops the health check (which may take up to a node's recovery).
func SetClosing(s *Store, f func()) { s.hooks.closing = f }

// SetWarnBeforeAnswer makes a split Add's settle that ends unsettled emit
// its EventWarning before it answers the caller and before Close stops
// waiting for it, as before rv-settle2 R2 (an OnEvent that calls Close
// then waits for itself).
func SetWarnBeforeAnswer(s *Store) { s.hooks.warnBeforeAnswer = true }

// SetR9KeepsData makes s the code before review-3 B1: R9 leaves a data
// record on the third node (a failover's older copy, a lost fence) as it
// is, replacing only a blank or another configuration's witness.
func SetR9KeepsData(s *Store) { s.hooks.r9KeepsData = true }

// eachMeta calls f with the meta client of each of s's nodes.
func eachMeta(s *Store, f func(*metaClient)) {
	for _, n := range s.nodes {
		f(n.meta)
	}
}

// nodeAt returns s's node at addr.
func nodeAt(s *Store, addr string) *node {
	for _, n := range s.nodes {
		if n.addr == addr {
			return n
		}
	}
	panic("no node at " + addr)
}

// SetRelabelOnFlush makes every new incarnation sentinel a node's new
// connection reads a new label, a flush's too (the code before: a token
// read on a connection opened before a flush is refused on one opened
// after it).
func SetRelabelOnFlush(s *Store) {
	eachMeta(s, func(c *metaClient) { c.relabelOnFlush = true })
}

// SetLabelNoProbe makes a new sentinel keep the node's label without
// asking an older connection (a broken variant: a restart's new process
// keeps the old label, and a token of the old one is sent to it).
func SetLabelNoProbe(s *Store) {
	eachMeta(s, func(c *metaClient) { c.labelNoProbe = true })
}

// IncLabel returns the incarnation label of the node at addr (0 before
// its first connection).
func IncLabel(s *Store, addr string) uint64 { return nodeAt(s, addr).meta.inc.Load() }

// DialNew opens a new connection to the node at addr (its hello reads
// the node's incarnation sentinel, creating it when missing, as any
// operation's dial does) and pools it.
func DialNew(s *Store, addr string) error { return DialNewCtx(context.Background(), s, addr) }

// ReadToken reads key on the node at addr through the witness scheme's
// connections and returns its token and the label of the connection that
// read it (cas 0: a miss).
func ReadToken(s *Store, addr, key string) (cas, inc uint64, err error) {
	it, err := nodeAt(s, addr).wget(context.Background(), key, " c")
	if err != nil || it.metaItem == nil {
		return 0, it.inc, err
	}
	return it.cas, it.inc, nil
}

// WriteWithToken stores value under key on the node at addr only if its
// token is still cas in incarnation inc (R1's conditional write, as every
// decision of the witness scheme sends it).
func WriteWithToken(s *Store, addr, key string, value []byte, cas, inc uint64) error {
	_, err := nodeAt(s, addr).wcas(context.Background(), key, value, 60, kindData, cas, inc)
	return err
}

// ErrOtherIncarnation is the refusal, not sent, of a token of another
// incarnation of the node (R1).
var ErrOtherIncarnation = errOtherInc

// SetNoProbeConn makes the nodes keep no connection for the label's
// probe (the first version of the flush's label, cold review rv-label
// M1): the probe then finds one only when the pool holds one idle.
func SetNoProbeConn(s *Store) {
	eachMeta(s, func(c *metaClient) { c.noProbeConn = true })
}

// SetProbeIgnoresCtx bounds the label's probe by Timeout only: the
// caller's context neither bounds its deadline nor interrupts it (a
// broken variant: a caller whose deadline passed waits up to Timeout).
func SetProbeIgnoresCtx(s *Store) {
	eachMeta(s, func(c *metaClient) {
		c.probeCtx = func(ctx context.Context) (context.Context, context.CancelFunc) {
			return context.WithoutCancel(ctx), func() {}
		}
	})
}

// SetProbeNoCancel bounds the label's probe by Timeout and the caller's
// deadline but does not interrupt it when the caller's context is
// cancelled (the code before: a caller cancelled with no deadline waits
// up to Timeout).
func SetProbeNoCancel(s *Store) {
	eachMeta(s, func(c *metaClient) {
		c.probeCtx = func(ctx context.Context) (context.Context, context.CancelFunc) {
			if d, ok := ctx.Deadline(); ok {
				return context.WithDeadline(context.WithoutCancel(ctx), d)
			}
			return context.WithoutCancel(ctx), func() {}
		}
	})
}

// SetCloseIdleKeepsProbe makes closeIdle (a relabel's) leave the probe
// connection in its slot (a broken variant: a connection of the old
// label kept for the next probe).
func SetCloseIdleKeepsProbe(s *Store) {
	eachMeta(s, func(c *metaClient) { c.probeKeptByCloseIdle = true })
}

// HasProbeConn reports whether the node at addr keeps a connection for
// the label's probe.
func HasProbeConn(s *Store, addr string) bool {
	c := nodeAt(s, addr).meta
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.probe != nil
}

// DropIdle closes the idle pooled connections to the node at addr, not
// its probe connection (as when every pooled one is lent: the next
// operation dials).
func DropIdle(s *Store, addr string) {
	c := nodeAt(s, addr).meta
	c.mu.Lock()
	idle := c.idle
	c.idle = nil
	c.mu.Unlock()
	for _, cn := range idle {
		cn.nc.Close()
	}
}

// SetAddOtherIncExists makes an Add whose CAS was refused as of another
// incarnation of its node answer ErrExists (the code before: cold review
// rv-label M2), not read again.
func SetAddOtherIncExists(s *Store) { s.hooks.addOtherIncExists = true }

// HoldLabel takes the node at addr's label slot (labelSem) until release
// is called: a new connection's label waits for it; waiting (closed) is
// closed when one is about to.
func HoldLabel(s *Store, addr string) (waiting <-chan struct{}, release func()) {
	c := nodeAt(s, addr).meta
	w := make(chan struct{})
	var wonce sync.Once
	c.labelWaits = func() { wonce.Do(func() { close(w) }) }
	c.labelSem <- struct{}{}
	var once sync.Once
	return w, func() { once.Do(func() { <-c.labelSem }) }
}

// DialNewCtx is DialNew with the dial's context.
func DialNewCtx(ctx context.Context, s *Store, addr string) error {
	_, err := nodeAt(s, addr).meta.doOn(ctx, newConn, func(*metaConn) error { return nil })
	return err
}

// SetLifetimeIgnored makes s the code before the lifetime nonce's
// consumers (docs/replication.md §16 item 5): the undo's rows of certain
// conflict and primaryShows decide by one chain of versions of a
// configuration whatever the lifetimes of the records they read (a
// session deleted or expired and created again since the write passes
// for its competitors).
func SetLifetimeIgnored(s *Store) { s.hooks.lifetimeIgnored = true }

// SetDecisionNewLifetime makes s a broken variant (§16 item 5): a
// decision's new configuration (configure: R7's failover, R11.3's
// re-ballot) draws a new lifetime instead of carrying its base's (the
// broken variant of TestLifetimeCarried).
func SetDecisionNewLifetime(s *Store) { s.hooks.decisionNewLifetime = true }

// SetFarNotAppliedOff makes s's undo the code before §16 item 4: no row
// answers a write "not applied" past its base's version by L7″.
func SetFarNotAppliedOff(s *Store) { s.hooks.farNotAppliedOff = true }

// SetCompleteOwnReplyLost injects a fault into s: the writer's own
// completion CAS of P is stored and its reply lost.
func SetCompleteOwnReplyLost(s *Store) { s.hooks.completeOwnReplyLost = true }

// SetRolledBackAsReplaced makes s the code before §16 item 6: a two-trip
// append whose touch of Q finds its base again is a replaced copy.
func SetRolledBackAsReplaced(s *Store) { s.hooks.rolledBackAsReplaced = true }

// SetMaybeOnPIgnored makes s's undo a broken variant: its row "not
// applied, however far" ignores a completion CAS of P sent with no reply.
func SetMaybeOnPIgnored(s *Store) { s.hooks.maybeOnPIgnored = true }

// SetCarriesOff makes s the code before §17 (docs/replication.md, which
// write a decision carries): descent reads no Carries and has no negative
// slot rule, and the write failover's refusals answer unknown without
// reading again. Records are still written as version 5.
func SetCarriesOff(s *Store) { s.hooks.carriesOff = true }

// SetCarriesPending is a broken variant (rvcarry B1): a pending fence
// that carries the write counts as its descendant, without reading its
// other copy.
func SetCarriesPending(s *Store) { s.hooks.carriesPending = true }

// SetCarriesNoNegSlot is a broken variant (rvcarry M2 not applied):
// inChain has no negative slot rule (the ancestor slot of the write's
// version not its nonce), only the parent-slot rule.
func SetCarriesNoNegSlot(s *Store) { s.hooks.carriesNoNegSlot = true }

// SetCarriesNoTouch is a broken variant (rvcarry M5): an append is
// acknowledged from another process's decision that carries it without
// touching the decision's copies with the write's T.
func SetCarriesNoTouch(s *Store) { s.hooks.carriesNoTouch = true }

// SetReclaimedNotOwn is the code before rvcarries2 R2: the write
// failover's resolution (reclaimed) does not name its own write, so a
// plain split of it on P is answered with its parent at this process's
// first sight of it (unknown), or, seen before, waited for one Timeout
// (waitWriter) before it is completed.
func SetReclaimedNotOwn(s *Store) { s.hooks.reclaimedNotOwn = true }

// SetTouchMovedOnUnknown is the code before rvcarries2 R3 (a): an append
// acknowledged from a decision that carries it is unknown when a copy of
// the decision has moved on to a later record built on it.
func SetTouchMovedOnUnknown(s *Store) { s.hooks.touchMovedOnUnknown = true }

// SetTouchDecisionHold calls f when touchDecision is about to read the
// decision's copies.
func SetTouchDecisionHold(s *Store, f func(key string)) { s.hooks.touchDecisionHold = f }

// SetWriteFailoverRefused calls f when a write failover's promise, fence
// or copy was refused, before it reads again.
func SetWriteFailoverRefused(s *Store, f func(key string)) { s.hooks.writeFailoverRefused = f }

// SetWriteFailoverHold calls f in a write failover before it reads the
// witness node (read false) and after (read true), before its promise:
// a test holds the writer there while another Store decides.
func SetWriteFailoverHold(s *Store, f func(key string, read bool)) { s.hooks.writeFailoverHold = f }
