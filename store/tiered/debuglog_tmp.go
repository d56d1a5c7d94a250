package tiered

// TEMPORARY debug logging; remove.

import (
	"fmt"
	"hash/crc32"
	"os"
	"sync"
	"time"

	"github.com/sessionlock/sessionlock/provider"
)

var dbgMu sync.Mutex
var dbgF *os.File
var dbgOnce sync.Once

func dbg(s *Store, key, what string, vals ...[]byte) {
	dbgOnce.Do(func() {
		if p := os.Getenv("TIERED_DEBUG_LOG"); p != "" {
			dbgF, _ = os.OpenFile(p, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		}
	})
	if dbgF == nil {
		return
	}
	line := fmt.Sprintf("%d %p %s %s", time.Now().UnixNano(), s, key[len(key)-6:], what)
	for _, v := range vals {
		h, err := provider.ParseRecordHeader(v)
		if err != nil {
			line += " [bad]"
			continue
		}
		line += fmt.Sprintf(" [e%d s%d d%d L%v id%d/%d v%08x]", h.Seq>>32, h.Seq&0xffffffff, h.DataSeq, h.Locked, h.LockID>>32, h.LockID&0xffffffff, crc32.ChecksumIEEE(v[49:len(v)-4]))
	}
	dbgMu.Lock()
	fmt.Fprintln(dbgF, line)
	dbgMu.Unlock()
}
