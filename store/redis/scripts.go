package redis

import (
	"context"
	"crypto/sha1"
	"encoding/hex"

	goredis "github.com/redis/go-redis/v9"

	"github.com/sessionlock/sessionlock/provider"
)

// script is a Lua script the Store calls by its SHA1 (EVALSHA). The
// "#!lua" line (Redis 7) declares a script that may write: the server
// refuses it as a whole, before it runs, when it is over maxmemory (OOM)
// or a replica (READONLY), so a refused script wrote nothing.
type script struct {
	name, src, sha string
}

func newScript(name, src string) *script {
	sum := sha1.Sum([]byte(src))
	return &script{name: name, src: src, sha: hex.EncodeToString(sum[:])}
}

// casScript replaces KEYS[1] with ARGV[2] (the new token and value) for
// ARGV[3] milliseconds if its first 8 bytes are the token ARGV[1]. It
// returns 1 when replaced, 0 when the key is absent, -1 when the token
// differs.
var casScript = newScript("cas", `#!lua
local cur = redis.call('GETRANGE', KEYS[1], 0, 7)
if cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
if cur == '' and redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
return -1
`)

// appendScript appends ARGV[3] (a delta) to KEYS[1] if its first 8 bytes
// are the token ARGV[1], replaces those 8 bytes with the new token ARGV[2]
// and sets the key's TTL to ARGV[4] milliseconds: the token stays at the
// front, where APPEND does not move it, and the value after it grows by
// the delta. It returns 1 when appended, 0 when the key is absent, -1 when
// the token differs, and -2, writing nothing, when the stored string
// would grow longer than ARGV[5] bytes. The Store knows nothing of what
// it appends: the provider's record package reads the value and its
// deltas as one record.
var appendScript = newScript("append", `#!lua
local cur = redis.call('GETRANGE', KEYS[1], 0, 7)
if cur == ARGV[1] then
  if redis.call('STRLEN', KEYS[1]) + #ARGV[3] > tonumber(ARGV[5]) then
    return -2
  end
  redis.call('APPEND', KEYS[1], ARGV[3])
  redis.call('SETRANGE', KEYS[1], 0, ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return 1
end
if cur == '' and redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
return -1
`)

// run calls sc by its SHA1 (EVALSHA) with c's key and args, and once
// more with its source (EVAL, which also loads it) when the server does
// not know it: the first call on a new server, and after SCRIPT FLUSH or a
// restart. NOSCRIPT is returned before anything runs, so the second call
// is safe. It returns the script's reply and, with WAIT on, how many
// replicas acknowledged (see write). args are pointers into c (see call).
func (s *Store) run(ctx context.Context, sc *script, c *call, args ...any) (n, acked int64, err error) {
	c.args[2], c.args[3] = 1, &c.key
	nargs := 4 + copy(c.args[4:], args)
	n, acked, err = s.eval(ctx, c.args[:nargs], "evalsha", &sc.sha)
	if err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") {
		s.cfg.OnEvent.Emit(provider.Event{Kind: provider.EventFallback, Node: s.cfg.Addr, Detail: "script " + sc.name + " loaded (NOSCRIPT)"})
		n, acked, err = s.eval(ctx, c.args[:nargs], "eval", &sc.src)
	}
	if err == nil {
		s.ok()
	}
	return n, acked, err
}

// eval sends cmd script and the rest of args (1, key, the script's
// arguments) once (see noRetry), and returns the integer reply and the
// replicas' acknowledgements (see write).
func (s *Store) eval(ctx context.Context, args []any, cmd string, script *string) (n, acked int64, err error) {
	args[0], args[1] = cmd, script
	c := goredis.NewIntCmd(ctx, args...)
	c.SetFirstKeyPos(3)
	if acked, err = s.write(ctx, *args[3].(*string), noRetryInt{c}); err != nil {
		return 0, 0, err
	}
	return c.Val(), acked, nil
}
