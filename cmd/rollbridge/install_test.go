package main

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// make install puts the binary, the completions the binary generates and
// the example units where distributions look for them, under DESTDIR and
// for any PREFIX; make uninstall removes exactly those files.
func TestMakeInstallAndUninstall(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	output := func(args ...string) []byte {
		out, err := exec.Command(binary, args...).Output()
		if err != nil {
			t.Fatalf("rollbridge %v: %v", args, err)
		}
		return out
	}
	bashScript, zshScript := output("completion", "bash"), output("completion", "zsh")
	for _, tc := range []struct{ prefix, bindir string }{{"", "/usr/local/bin"}, {"/usr", "/usr/bin"}} {
		t.Run("PREFIX="+tc.prefix, func(t *testing.T) {
			dest := t.TempDir()
			prefix := strings.TrimSuffix(tc.bindir, "/bin")
			args := []string{"-s", "-C", root, "install", "DESTDIR=" + dest, "BIN=" + binary}
			if tc.prefix != "" {
				args = append(args, "PREFIX="+tc.prefix)
			}
			if out, err := exec.Command("make", args...).CombinedOutput(); err != nil {
				t.Fatalf("make install: %v\n%s", err, out)
			}
			// Someone else's file next to ours must survive the uninstall.
			foreign := filepath.Join(dest, prefix, "bin", "other-tool")
			if err := os.WriteFile(foreign, []byte("x"), 0o755); err != nil {
				t.Fatal(err)
			}
			self, err := os.ReadFile(binary)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]struct {
				mode    fs.FileMode
				content []byte
			}{
				"bin/rollbridge": {0o755, self},
				"bin/other-tool": {0o755, []byte("x")},
				"share/bash-completion/completions/rollbridge": {0o644, bashScript},
				"share/zsh/site-functions/_rollbridge":         {0o644, zshScript},
			}
			for _, unit := range []string{"rollbridge.service", "rollbridge@.service"} {
				example, err := os.ReadFile(filepath.Join(root, "examples", unit))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Contains(example, []byte("ExecStart=/usr/local/bin/rollbridge daemon")) {
					t.Fatalf("examples/%s no longer starts /usr/local/bin/rollbridge; the install's rewrite of ExecStart= needs updating", unit)
				}
				installed := bytes.ReplaceAll(example, []byte("/usr/local/bin/rollbridge"), []byte(tc.bindir+"/rollbridge"))
				want["lib/systemd/system/"+unit] = struct {
					mode    fs.FileMode
					content []byte
				}{0o644, installed}
			}
			got := installedFiles(t, dest)
			var wantNames []string
			for name := range want {
				wantNames = append(wantNames, filepath.Join(prefix, name)[1:])
			}
			sort.Strings(wantNames)
			if strings.Join(got, "\n") != strings.Join(wantNames, "\n") {
				t.Fatalf("installed files:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantNames, "\n"))
			}
			for name, w := range want {
				path := filepath.Join(dest, prefix, name)
				st, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				content, _ := os.ReadFile(path)
				if st.Mode().Perm() != w.mode || !bytes.Equal(content, w.content) {
					t.Errorf("%s: mode %v, content equal %v", name, st.Mode().Perm(), bytes.Equal(content, w.content))
				}
				if bytes.Contains(content, []byte(dest)) {
					t.Errorf("%s names the staging directory", name)
				}
			}

			args[3] = "uninstall"
			if out, err := exec.Command("make", args...).CombinedOutput(); err != nil {
				t.Fatalf("make uninstall: %v\n%s", err, out)
			}
			if got := installedFiles(t, dest); strings.Join(got, ",") != filepath.Join(prefix, "bin/other-tool")[1:] {
				t.Fatalf("left after uninstall: %v", got)
			}
		})
	}
}

// installedFiles lists the regular files under dir, relative and sorted.
func installedFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, path)
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	return files
}
