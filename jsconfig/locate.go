package jsconfig

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DefaultFileNames are the names looked up when no --config is given.
var DefaultFileNames = []string{"rollbridge.js"}

// Location names a config file: Display is what the user typed (or the
// absolute default path), Abs is what is read.
type Location struct {
	Display string
	Abs     string
}

// NotFoundError is returned when the default lookup finds no config file,
// or when its stat fails with something other than "does not exist".
type NotFoundError struct {
	Message string
}

func (e *NotFoundError) Error() string { return e.Message }

// Locate resolves the config path. explicit is the --config value and
// given says whether the flag was passed at all (an empty value is used
// as is and resolves to cwd). cwd is the caller's working directory.
func Locate(explicit string, given bool, cwd string) (Location, error) {
	if given {
		return Location{Display: explicit, Abs: absolute(explicit, cwd)}, nil
	}
	for _, name := range DefaultFileNames {
		p := filepath.Join(cwd, name)
		fi, err := os.Stat(p)
		if err == nil {
			if fi.Mode().IsRegular() {
				return Location{Display: p, Abs: p}, nil
			}
			continue
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return Location{}, &NotFoundError{Message: toNodeError(err, "stat", p).Error()}
		}
	}
	return Location{}, &NotFoundError{Message: "No config file found in " + cwd +
		". Pass --config <path> or add one of: " + strings.Join(DefaultFileNames, ", ") + "."}
}

func absolute(p, cwd string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(cwd, p)
}
