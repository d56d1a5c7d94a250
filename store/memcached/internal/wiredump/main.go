// Command wiredump prints, for one key, the memcached commands and replies
// of the harness's wire logs (stress/internal/harness, WireEnv), with the
// witness envelope and the provider record of every value decoded:
//
//	go run ./store/memcached/internal/wiredump -key sl:abc123 DIR/app-*-wire.log
//
// Each file's connections are parsed as meta protocol streams; a command
// and its reply are matched in order on their connection. The lines of
// all files are merged by time (the command's send time).
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

type event struct {
	at   int64
	line string
}

func main() {
	key := flag.String("key", "", "the key (a prefix is enough)")
	flag.Parse()
	var out []event
	for _, f := range flag.Args() {
		evs, err := parse(f, *key)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		out = append(out, evs...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].at < out[j].at })
	for _, e := range out {
		fmt.Println(e.line)
	}
}

type conn struct {
	node     string
	in, out  []byte  // unparsed client bytes, server bytes
	sentAt   []int64 // times of the chunks... per parsed command
	cmds     []cmd   // sent, reply not yet parsed
	inTimes  []chunkT
	outTimes []chunkT
	inOff    int // bytes of in consumed (absolute)
	outOff   int
}

type chunkT struct {
	end int // absolute offset after the chunk
	at  int64
}

type cmd struct {
	text  string
	key   string
	value []byte
	at    int64
}

func timeAt(ts []chunkT, off int) int64 {
	for _, c := range ts {
		if off < c.end {
			return c.at
		}
	}
	if len(ts) > 0 {
		return ts[len(ts)-1].at
	}
	return 0
}

func parse(file, key string) ([]event, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	app := strings.TrimSuffix(filepath.Base(file), "-wire.log")
	conns := map[string]*conn{}
	var out []event
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		fs := strings.SplitN(sc.Text(), " ", 5)
		if len(fs) < 5 {
			continue
		}
		at, _ := strconv.ParseInt(fs[0], 10, 64)
		id, node, dir := fs[1], fs[2], fs[3]
		rest := fs[4]
		var errs string
		if i := strings.LastIndex(rest, "\" err="); i >= 0 {
			errs, rest = rest[i+6:], rest[:i+1]
		}
		data, err := strconv.Unquote(rest)
		if err != nil {
			continue
		}
		c := conns[id]
		if c == nil {
			c = &conn{node: node}
			conns[id] = c
		}
		switch dir {
		case ">":
			c.in = append(c.in, data...)
			c.inTimes = append(c.inTimes, chunkT{c.inOff + len(c.in), at})
			for {
				cm, n := parseCmd(c.in)
				if n == 0 {
					break
				}
				cm.at = timeAt(c.inTimes, c.inOff)
				c.in, c.inOff = c.in[n:], c.inOff+n
				c.cmds = append(c.cmds, cm)
			}
		case "<":
			c.out = append(c.out, data...)
			c.outTimes = append(c.outTimes, chunkT{c.outOff + len(c.out), at})
			for len(c.cmds) > 0 {
				reply, val, n := parseReply(c.out)
				if n == 0 {
					break
				}
				rat := timeAt(c.outTimes, c.outOff)
				c.out, c.outOff = c.out[n:], c.outOff+n
				cm := c.cmds[0]
				c.cmds = c.cmds[1:]
				if strings.HasPrefix(cm.key, key) && key != "" {
					out = append(out, event{cm.at, fmt.Sprintf("%d %s %s %s [%s] %s%s -> (+%.1fms) %s%s", cm.at/1e6%100000, app, id, node, cm.key[:min(len(cm.key), 9)], strings.Replace(cm.text, cm.key, "", 1), show(cm.value), float64(rat-cm.at)/1e6, reply, show(val))})
				}
			}
		case "close", "dial":
			if dir == "close" {
				for _, cm := range c.cmds {
					if strings.HasPrefix(cm.key, key) && key != "" {
						out = append(out, event{cm.at, fmt.Sprintf("%d %s %s %s [%s] %s%s -> NO REPLY (closed at +%.1fms) %s", cm.at/1e6%100000, app, id, node, cm.key[:min(len(cm.key), 9)], strings.Replace(cm.text, cm.key, "", 1), show(cm.value), float64(at-cm.at)/1e6, errs)})
					}
				}
				c.cmds = nil
			}
		}
	}
	for id, c := range conns {
		for _, cm := range c.cmds {
			if strings.HasPrefix(cm.key, key) && key != "" {
				out = append(out, event{cm.at, fmt.Sprintf("%d %s %s %s [%s] %s%s -> NO REPLY (end of log)", cm.at/1e6%100000, app, id, c.node, cm.key[:min(len(cm.key), 9)], strings.Replace(cm.text, cm.key, "", 1), show(cm.value))})
			}
		}
	}
	return out, sc.Err()
}

// parseCmd parses one command at the start of b: its length, 0 if b holds
// no whole one yet.
func parseCmd(b []byte) (cmd, int) {
	i := bytes.Index(b, []byte("\r\n"))
	if i < 0 {
		return cmd{}, 0
	}
	line := string(b[:i])
	fs := strings.Fields(line)
	c := cmd{text: line}
	if len(fs) > 1 {
		c.key = fs[1]
	}
	if len(fs) > 2 && fs[0] == "ms" {
		n, err := strconv.Atoi(fs[2])
		if err != nil {
			return c, i + 2
		}
		if len(b) < i+2+n+2 {
			return cmd{}, 0
		}
		c.value = b[i+2 : i+2+n]
		return c, i + 2 + n + 2
	}
	return c, i + 2
}

// parseReply parses one reply at the start of b.
func parseReply(b []byte) (string, []byte, int) {
	i := bytes.Index(b, []byte("\r\n"))
	if i < 0 {
		return "", nil, 0
	}
	line := string(b[:i])
	fs := strings.Fields(line)
	if len(fs) > 1 && fs[0] == "VA" {
		n, _ := strconv.Atoi(fs[1])
		if len(b) < i+2+n+2 {
			return "", nil, 0
		}
		return line, b[i+2 : i+2+n], i + 2 + n + 2
	}
	if len(fs) > 0 && fs[0] == "STAT" {
		j := bytes.Index(b, []byte("END\r\n"))
		if j < 0 {
			return "", nil, 0
		}
		return "STATS", nil, j + 5
	}
	return line, nil, i + 2
}

func show(v []byte) string {
	if v == nil {
		return ""
	}
	if len(v) == 0 {
		return " <blank>"
	}
	if v[0] == envelope.TrailerTag {
		return fmt.Sprintf(" <trailer %d B nonce %s>", len(v), trailerNonce(v))
	}
	e, payload, err := envelope.Decode(v)
	if err != nil {
		return fmt.Sprintf(" <%d B undecodable: %v>", len(v), err)
	}
	s := fmt.Sprintf(" <E%d P%d Q%d V%d n%04x", e.E, e.P, e.Q, e.V, e.Nonce&0xffff)
	if e.Pending {
		s += " PENDING"
	}
	if e.NoWit {
		s += " nowit"
	}
	if len(payload) == 0 {
		return s + " witness>"
	}
	r, err := record.Decode(payload)
	if err != nil {
		return s + fmt.Sprintf(" record?%v>", err)
	}
	lk := "unlocked"
	if r.Locked {
		lk = fmt.Sprintf("LOCKED id=%d", r.LockID)
	} else {
		lk = fmt.Sprintf("unlocked (last id %d)", r.LockID)
	}
	return s + fmt.Sprintf(" | %s seq=%d dseq=%d deltas=%d>", lk, r.Seq, r.DataSeq, r.Deltas)
}

func trailerNonce(v []byte) string {
	if len(v) < 3+4+8+4 {
		return "?"
	}
	n := len(v)
	return fmt.Sprintf("%04x", uint64(v[n-16+6])<<8|uint64(v[n-16+7]))
}
