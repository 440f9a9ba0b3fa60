package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/rollbridge/rollbridge/jsconfig"
)

// Identity is the daemonRuntime of status (docs/cli.md#how-it-works): the
// running build, so ensure-daemon only reuses a daemon of the identical
// binary.
type Identity struct {
	Digest  string // SHA-256 of the executable, lowercase hex
	Format  int
	Path    string // the executable's directory (informational)
	Version string
}

// ExecutableIdentity hashes the running executable.
func ExecutableIdentity(version string) (Identity, error) {
	exe, err := os.Executable()
	if err != nil {
		return Identity{}, fmt.Errorf("cannot locate the rollbridge executable: %w", err)
	}
	// /proc/self/exe is the file this process runs, even if the path was
	// replaced since; hash that.
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		if f, err = os.Open(exe); err != nil {
			return Identity{}, fmt.Errorf("cannot read the rollbridge executable: %w", err)
		}
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return Identity{}, fmt.Errorf("cannot read the rollbridge executable: %w", err)
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	return Identity{Digest: hex.EncodeToString(h.Sum(nil)), Format: 1, Path: filepath.Dir(exe), Version: version}, nil
}

func (id Identity) object() jsconfig.Object {
	return jsconfig.Object{
		{Key: "digest", Value: id.Digest},
		{Key: "format", Value: id.Format},
		{Key: "path", Value: id.Path},
		{Key: "version", Value: id.Version},
	}
}
