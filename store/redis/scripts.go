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

// run calls sc by its SHA1 (EVALSHA), and once more with its source
// (EVAL, which also loads it) when the server does not know it: the first
// call on a new server, and after SCRIPT FLUSH or a restart. NOSCRIPT is
// returned before anything runs, so the second call is safe.
// It returns the script's reply and, with WAIT on, how many replicas
// acknowledged (see write).
func (s *Store) run(ctx context.Context, sc *script, key string, args ...any) (n, acked int64, err error) {
	n, acked, err = s.eval(ctx, "evalsha", sc.sha, key, args)
	if err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") {
		s.cfg.OnEvent.Emit(provider.Event{Kind: provider.EventFallback, Node: s.cfg.Addr, Detail: "script " + sc.name + " loaded (NOSCRIPT)"})
		n, acked, err = s.eval(ctx, "eval", sc.src, key, args)
	}
	if err == nil {
		s.ok()
	}
	return n, acked, err
}

// eval sends EVAL or EVALSHA of one key once (see noRetry) and returns
// its integer reply and the replicas' acknowledgements (see write).
func (s *Store) eval(ctx context.Context, cmdName, script, key string, args []any) (n, acked int64, err error) {
	cmdArgs := make([]any, 0, 4+len(args))
	cmdArgs = append(cmdArgs, cmdName, script, 1, key)
	cmdArgs = append(cmdArgs, args...)
	cmd := goredis.NewIntCmd(ctx, cmdArgs...)
	cmd.SetFirstKeyPos(3)
	if acked, err = s.write(ctx, key, cmd); err != nil {
		return 0, 0, err
	}
	return cmd.Val(), acked, nil
}
