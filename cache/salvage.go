package cache

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"gateagent/internal/regfile"
	"gateagent/internal/seglog"
	"os"
	"sort"
	"syscall"
	"time"
)

// Salvaged says what Salvage read from a damaged file, and what it could
// not.
type Salvaged struct {
	// Events and Passbacks count what was copied into the journal.
	Events    int `json:"events"`
	Passbacks int `json:"passbacks"`
	// Lost counts the events the damaged file held but that could not be
	// read. LostExact is false when the file's own record of where its
	// events begin or end could not be read either: Lost is then a lower
	// bound (0 when nothing at all could be read).
	Lost      int  `json:"lost"`
	LostExact bool `json:"lost_exact"`
	// NextSeq is the sequence number the journal's next event gets.
	NextSeq uint64 `json:"next_seq"`
}

// minEventBytes is the least a stored event takes in a leaf page: element
// header, key and the shortest value.
const minEventBytes = elemSize + 8 + 4 + 8 + 16 + 1 + 1

// Salvage reads what it can of the events and passages in the damaged
// file at path (a journal, or a cache of schema 1, which held them) and
// adds them to the journal: each event under its own sequence number
// unless the journal has it, each passage unless the journal knows a
// later one. It reads the file's pages itself, from both meta pages
// (the previous transaction's tree often survives damage to the newest),
// skipping whatever is damaged; nothing it reads can crash it.
//
// The journal's sequence is raised past every number the damaged file can
// have used, so that no number reaches the issuer twice: to the file's own
// sequence when it is readable, else past the highest one found by as
// many events as the file could hold, else (nothing readable) to the
// current Unix time in milliseconds. A file whose meta bucket says it is
// a cache of schema 2 holds no events, and moves nothing.
func (j *Journal) Salvage(path string, now time.Time) (Salvaged, error) {
	var res Salvaged
	if fi, err := os.Lstat(path); err == nil && fi.IsDir() {
		var found salvage
		size, err := found.readLog(path)
		if err != nil {
			return res, fmt.Errorf("journal: salvage %s: %w", path, err)
		}
		j.mu.Lock()
		defer j.mu.Unlock()
		return j.salvage(&found, size, now)
	}
	f, _, err := regfile.Open(path) // a FIFO moved aside must not block
	if err != nil {
		return res, fmt.Errorf("journal: salvage %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return res, fmt.Errorf("journal: salvage %s: %w", path, err)
	}
	var found salvage
	if fi.Size() > 0 && fi.Size() <= int64(^uint(0)>>1) {
		data, err := syscall.Mmap(int(f.Fd()), 0, int(fi.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
		if err != nil {
			return res, fmt.Errorf("journal: salvage %s: map: %w", path, err)
		}
		// A fault part-way (a disk that fails to read) ends the reading
		// with what was found so far.
		_ = safely(path, func() error { found.read(path, data); return nil })
		syscall.Munmap(data)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.salvage(&found, uint64(fi.Size()), now)
}

// readLog reads what it can of a damaged journal log in dir: every record
// that passes its check, whatever its key check value (an event or a
// passage under another key fails its own MAC, and is then lost). It
// returns the bytes of the segments read.
func (s *salvage) readLog(dir string) (uint64, error) {
	s.events = map[uint64][]byte{}
	s.passes = map[[passKeyLen]byte][][]byte{}
	var size uint64
	err := seglog.ReadAll(dir, "journal", nil, func(r seglog.Record) {
		size += uint64(len(r.Payload))
		p := r.Payload
		if len(p) < jheadLen {
			return
		}
		acked := binary.BigEndian.Uint64(p[tagLen:])
		seq := binary.BigEndian.Uint64(p[tagLen+8:])
		// The newest records say where the events stood; any record is
		// evidence of numbers given and acknowledged.
		s.seq, s.seqKnown = max(s.seq, seq), true
		s.skip = max(s.skip, acked)
		s.acked, s.ackKnown = max(s.acked, acked), true
		body := p[jheadLen:]
		event := func(body []byte) {
			if len(body) > 8 {
				s.events[binary.BigEndian.Uint64(body)] = bytes.Clone(body[8:])
			}
		}
		pass := func(body []byte) {
			if len(body) >= passKeyLen+passLen {
				pk := [passKeyLen]byte(body)
				s.passes[pk] = append(s.passes[pk], bytes.Clone(body[passKeyLen:passKeyLen+passLen]))
			}
		}
		switch r.Kind {
		case recEvent:
			event(body)
		case recPassage:
			pass(body)
			if len(body) >= passKeyLen+passLen {
				event(body[passKeyLen+passLen:])
			}
		case recRepair:
			pass(body)
		case recCheckpoint:
			if len(body) < 16 {
				return
			}
			for b := body[16:]; len(b) > 0; {
				switch {
				case b[0] == entryEvent && len(b) >= 13:
					n := int(binary.BigEndian.Uint32(b[9:]))
					if n < 0 || len(b) < 13+n {
						return
					}
					event(append(bytes.Clone(b[1:9]), b[13:13+n]...))
					b = b[13+n:]
				case b[0] == entryPassage && len(b) >= 1+passKeyLen+passLen:
					pass(b[1:])
					b = b[1+passKeyLen+passLen:]
				case b[0] == entryBad && len(b) >= 1+passKeyLen:
					b = b[1+passKeyLen:]
				default:
					return
				}
			}
		}
	})
	// Events acknowledged are not salvaged: the issuer has them.
	for seq := range s.events {
		if seq <= s.acked {
			delete(s.events, seq)
		}
	}
	return size, err
}

// salvage is what could be read of a damaged file.
type salvage struct {
	events map[uint64][]byte
	// passes holds every passage read, raw: authenticated in salvage.
	passes map[[passKeyLen]byte][][]byte
	// seq is the events bucket's sequence, known when read from the
	// newest tree (an older tree's is a lower bound: evidence only).
	seq      uint64
	seqKnown bool
	// acked is a journal's last acknowledged sequence, known when read
	// from the newest tree; skip is the highest found in any tree.
	acked    uint64
	ackKnown bool
	skip     uint64
	// noEvents: the newest tree says the file is a cache of schema 2,
	// which holds no events.
	noEvents bool
}

// read walks the trees of both meta pages, newest first.
func (s *salvage) read(path string, data []byte) {
	s.events = map[uint64][]byte{}
	s.passes = map[[passKeyLen]byte][][]byte{}
	ps, ok := pageSizeOf(data)
	if !ok || ps < 1024 || ps > 1<<16 || ps&(ps-1) != 0 || uint64(len(data)) < 2*ps {
		return
	}
	var metas []meta
	for _, off := range []uint64{0, ps} {
		if m, ok := readMeta(data, off); ok && uint64(m.pageSize) == ps {
			metas = append(metas, m)
		}
	}
	sort.Slice(metas, func(a, b int) bool { return metas[a].txid > metas[b].txid })
	for i, m := range metas {
		m.hwm = min(m.hwm, uint64(len(data))/ps) // a file cut short: read what is there
		if m.root < 2 || m.root >= m.hwm {
			continue
		}
		var journal, cache2 bool
		var acked uint64
		var sawMeta bool
		w := newWalk(path, data, ps, m, recordChecks)
		w.lenient = true
		w.collect = func(bucket string, k, v []byte) {
			switch bucket {
			case "events":
				seq := binary.BigEndian.Uint64(k)
				if _, ok := s.events[seq]; !ok {
					s.events[seq] = bytes.Clone(v)
				}
			case "passback":
				pk := [passKeyLen]byte(k)
				s.passes[pk] = append(s.passes[pk], bytes.Clone(v))
			case "meta":
				sawMeta = true
				switch string(k) {
				case "kind":
					journal = string(v) == kindJournal
					cache2 = string(v) == kindCache // written by schema 2 only
				case "acked":
					acked = binary.BigEndian.Uint64(v)
				}
			}
		}
		w.markUsed(0)
		w.markUsed(1)
		w.tree(m.root, nil, nil, 0, nil)
		if seq, ok := w.buckets["events"]; ok {
			s.seq, s.seqKnown = max(s.seq, seq), s.seqKnown || i == 0
		}
		// A journal keeps the last acknowledged number (none: nothing
		// acknowledged yet); a cache of schema 1 did not.
		if sawMeta && journal {
			s.skip = max(s.skip, acked)
			if i == 0 {
				s.acked, s.ackKnown = acked, true
			}
		}
		if i == 0 && cache2 {
			s.noEvents = true
		}
	}
}

// salvage writes what was found into the journal and counts the rest.
// Only what authenticates under the journal's key is kept (an event of a
// journal of schema 1, which had no MAC, is given one); an event that
// fails counts as lost. A passage that fails is kept at now, the latest
// it can have been: its certificate is refused for one anti-passback
// window rather than let through twice.
func (j *Journal) salvage(s *salvage, size uint64, now time.Time) (Salvaged, error) {
	var res Salvaged
	for seq, v := range s.events {
		nv, err := upgradeEvent(j.key, seq, v)
		if err == nil && v[0] == eventVersion {
			_, ok, _ := openEvent(j.key, seq, v)
			if !ok {
				err = ErrAuth
			}
		}
		if err != nil {
			delete(s.events, seq)
			continue
		}
		s.events[seq] = nv
	}
	passes := map[[passKeyLen]byte]int64{}
	for pk, vs := range s.passes {
		for _, v := range vs {
			ns, ok := int64(0), false
			switch len(v) {
			case passLenV1:
				ns, ok = int64(binary.BigEndian.Uint64(v)), true
			case passLen:
				ns, ok = openPass(j.key, pk[:], v)
			}
			if !ok {
				ns = now.UnixNano()
			}
			if old, seen := passes[pk]; !seen || ns > old {
				passes[pk] = ns
			}
		}
	}
	var lo, hi uint64 // the events the damaged file held: (lo, hi]
	seqs := make([]uint64, 0, len(s.events))
	for seq := range s.events {
		seqs = append(seqs, seq)
	}
	sort.Slice(seqs, func(a, b int) bool { return seqs[a] < seqs[b] })
	if len(seqs) > 0 {
		lo, hi = seqs[0]-1, seqs[len(seqs)-1]
	}
	if s.ackKnown {
		lo = s.acked
	}
	hi = max(hi, s.seq)
	res.LostExact = s.ackKnown && s.seqKnown || s.noEvents
	if hi > lo {
		in := 0
		for _, seq := range seqs {
			if seq > lo && seq <= hi {
				in++
			}
		}
		res.Lost = int(min(hi-lo, 1<<31)) - in
	}
	// The sequence to continue from: past anything the file can have used.
	floor := max(hi, s.skip)
	switch {
	case s.seqKnown, s.noEvents:
	case floor > 0:
		floor += size/minEventBytes + 1
	default:
		floor = max(size/minEventBytes+1, uint64(max(now.UnixMilli(), 0)))
	}
	in := newMergeIn()
	in.passes, in.seqFloor, in.ackFloor = passes, floor, s.skip
	for _, seq := range seqs {
		in.events[seq] = s.events[seq]
	}
	var err error
	if res.Events, res.Passbacks, err = j.merge(in, true); err != nil {
		return Salvaged{}, fmt.Errorf("journal: salvage: %w", err)
	}
	res.NextSeq = j.st.lastSeq + 1
	return res, nil
}
