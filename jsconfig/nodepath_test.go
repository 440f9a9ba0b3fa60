package jsconfig

import "testing"

// Expected values are what Node's path.posix returns for the same input.
func TestNodePath(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{pathNormalize(""), "."},
		{pathNormalize("/a//b/../c/"), "/a/c/"},
		{pathNormalize("a/../.."), ".."},
		{pathNormalize("./"), "./"},
		{pathNormalize("/.."), "/"},
		{pathNormalize("a/./b/."), "a/b"},
		{pathJoin(), "."},
		{pathJoin("", ""), "."},
		{pathJoin("a", "", "b/"), "a/b/"},
		{pathJoin("/a", "../../x"), "/x"},
		{pathJoin("a", "..", "..", "b"), "../b"},
		{pathResolve("/cwd"), "/cwd"},
		{pathResolve("/cwd", "x", "../y"), "/cwd/y"},
		{pathResolve("/cwd", "/srv", "app/"), "/srv/app"},
		{pathRelative("/cwd", "/a/b/c", "/a/d"), "../../d"},
		{pathRelative("/cwd", "/a", "/a/b"), "b"},
		{pathRelative("/cwd", "/a/b", "/a"), ".."},
		{pathRelative("/cwd", "/a", "/a"), ""},
		{pathRelative("/cwd", "/", "/x"), "x"},
		{pathRelative("/cwd", "/ab", "/a"), "../a"},
		{pathDirname("/a/b/"), "/a"},
		{pathDirname("a"), "."},
		{pathDirname("/"), "/"},
		{pathDirname("//a"), "//"},
		{pathDirname(""), "."},
		{pathBasename("/a/b.js", ".js"), "b"},
		{pathBasename("/a/b/", ""), "b"},
		{pathBasename("b.js", "b.js"), "b.js"},
		{pathBasename("/", ""), ""},
		{pathExtname("a.tar.gz"), ".gz"},
		{pathExtname(".bashrc"), ""},
		{pathExtname("a."), "."},
		{pathExtname("a..b"), ".b"},
		{pathExtname("/x.y/z"), ""},
		{fileURL("/srv/my app/#1?%.js"), "file:///srv/my%20app/%231%3F%25.js"},
		{fileURL("/caf\u00e9"), "file:///caf%C3%A9"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
