package sdnotify

import "errors"

// MaxNameLen is the longest name systemd accepts for a stored descriptor.
const MaxNameLen = 255

var errInvalidName = errors.New("invalid descriptor name: use 1 to 255 printable ASCII characters without ':'")

// ValidName reports whether name is acceptable as an FDNAME= of the file
// descriptor store: at most 255 printable ASCII characters (0x20..0x7e),
// no ':' (the separator of $LISTEN_FDNAMES). These are systemd's rules
// (sd_notify(3), FDNAME=), except that the empty name is refused too: in
// $LISTEN_FDNAMES it cannot be told apart from a missing name.
func ValidName(name string) bool {
	if name == "" || len(name) > MaxNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c < ' ' || c >= 0x7f || c == ':' {
			return false
		}
	}
	return true
}
