// Package fsaccess answers, for gateagent diag, whether a given user could
// read, write or search a path: the agent's user, which is not diag's own
// (with the agent stopped, diag runs as root, and root may write anything).
//
// Run as root, Check asks the kernel itself: on a thread of its own it
// takes the user's IDs and groups and calls access(2), so ownership, mode
// bits, ACLs, read-only mounts and immutable files all count as they
// would for the agent; that thread then ends with its goroutine and is
// never reused. Run as the user in question it calls access(2) directly.
// Otherwise it can only judge from ownership and mode bits (and the
// mount's read-only flag), and says so.
package fsaccess

import (
	"errors"
	"fmt"
	"os/user"
	"strconv"
)

// User is whom a check is made as.
type User struct {
	Name   string `json:"name"`
	Group  string `json:"group,omitempty"` // the primary group's name
	UID    int    `json:"uid"`
	GID    int    `json:"gid"`
	Groups []int  `json:"groups,omitempty"` // supplementary groups
}

func (u User) String() string {
	if u.Name == "" {
		return "uid " + strconv.Itoa(u.UID)
	}
	return fmt.Sprintf("%s (uid %d)", u.Name, u.UID)
}

// Lookup finds a user by name, with its supplementary groups.
func Lookup(name string) (User, error) {
	uu, err := user.Lookup(name)
	if err != nil {
		return User{}, fmt.Errorf("fsaccess: %w", err)
	}
	return fromOS(uu)
}

// Current is the user the process runs as.
func Current() (User, error) {
	uu, err := user.Current()
	if err != nil {
		return User{}, fmt.Errorf("fsaccess: %w", err)
	}
	return fromOS(uu)
}

func fromOS(uu *user.User) (User, error) {
	u := User{Name: uu.Username}
	var err error
	if u.UID, err = strconv.Atoi(uu.Uid); err != nil {
		return User{}, fmt.Errorf("fsaccess: user %s: uid %q", uu.Username, uu.Uid)
	}
	if u.GID, err = strconv.Atoi(uu.Gid); err != nil {
		return User{}, fmt.Errorf("fsaccess: user %s: gid %q", uu.Username, uu.Gid)
	}
	if g, err := user.LookupGroupId(uu.Gid); err == nil {
		u.Group = g.Name
	}
	ids, err := uu.GroupIds()
	if err != nil {
		return u, nil // no supplementary groups known: the primary group still counts
	}
	for _, s := range ids {
		if g, err := strconv.Atoi(s); err == nil && g != u.GID {
			u.Groups = append(u.Groups, g)
		}
	}
	return u, nil
}

// Mode is the access asked for, as access(2)'s R_OK, W_OK and X_OK.
type Mode uint32

// The modes; combine them with |.
const (
	Read   Mode = 4
	Write  Mode = 2
	Search Mode = 1 // a directory's x bit: reach what is inside
)

func (m Mode) String() string {
	s := ""
	for _, b := range []struct {
		m Mode
		c string
	}{{Read, "r"}, {Write, "w"}, {Search, "x"}} {
		if m&b.m != 0 {
			s += b.c
		} else {
			s += "-"
		}
	}
	return s
}

// Method says how a check was judged.
type Method string

// The methods.
const (
	// Kernel: access(2) as the user: everything counts.
	Kernel Method = "kernel"
	// ModeBits: ownership, mode bits and the mount's read-only flag only
	// (ACLs and immutable files are not seen): diag is neither root nor
	// the user.
	ModeBits Method = "mode bits"
)

// ErrUnsupported: this platform has no way to check as another user.
var ErrUnsupported = errors.New("fsaccess: not supported on this platform")

// Denied is a refusal: Err is the errno (EACCES, EROFS, EPERM, ENOENT, ...),
// so errors.Is(err, fs.ErrPermission) or errors.Is(err, syscall.EROFS)
// tell the causes apart.
type Denied struct {
	Path string
	Mode Mode
	User User
	Err  error
}

func (e *Denied) Error() string {
	return fmt.Sprintf("%s: %s access for %s: %v", e.Path, e.Mode, e.User, e.Err)
}

func (e *Denied) Unwrap() error { return e.Err }
