package scap

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestParseLine(t *testing.T) {
	min := func(m, s int) time.Duration { return time.Duration(m)*time.Minute + time.Duration(s)*time.Second }
	cases := []struct {
		text string
		want Line
	}{
		{"!log jdoe@deploy1003 Started scap sync-world: Backport for [[gerrit:42|testwikis to 1.44.0-wmf.8 (T123123)]]",
			Line{Kind: LineStarted, Who: "jdoe@deploy1003", Program: "sync-world", Message: "Backport for [[gerrit:42|testwikis to 1.44.0-wmf.8 (T123123)]]"}},
		{"!log jdoe@deploy1003 Started scap sync-world", Line{Kind: LineStarted, Who: "jdoe@deploy1003", Program: "sync-world"}},
		{"!log jdoe@deploy1003 Started scap: old style", Line{Kind: LineStarted, Who: "jdoe@deploy1003", Message: "old style"}},
		{"  !log kim@deploy2002 Started scap sync-file: a/b.php: fix (T5)  ", Line{Kind: LineStarted, Who: "kim@deploy2002", Program: "sync-file", Message: "a/b.php: fix (T5)"}},
		{"!log jdoe@deploy1003 Finished scap sync-world: Backport for [[gerrit:42|x]] (duration: 02m 15s)",
			Line{Kind: LineFinished, Who: "jdoe@deploy1003", Program: "sync-world", Message: "Backport for [[gerrit:42|x]]", Duration: min(2, 15), HasDuration: true}},
		{"!log jdoe@deploy1003 Finished scap sync-world: (no message) (duration: 125m 03s)",
			Line{Kind: LineFinished, Who: "jdoe@deploy1003", Program: "sync-world", Message: "(no message)", Duration: min(125, 3), HasDuration: true}},
		// tcpircbot cut the line at 460 bytes: no duration tail.
		{"!log lee@deploy1003 Finished scap sync-world: Backport for [[gerrit:1|a]], [[gerrit:2|b (T38",
			Line{Kind: LineFinished, Who: "lee@deploy1003", Program: "sync-world", Message: "Backport for [[gerrit:1|a]], [[gerrit:2|b (T38"}},
		{"!log kim@deploy1003 sync-file aborted: fix bar (duration: 01m 00s)",
			Line{Kind: LineAborted, Who: "kim@deploy1003", Program: "sync-file", Message: "fix bar", Duration: time.Minute, HasDuration: true}},
		{"!log kim@deploy1003 scap sync-world aborted: x (duration: 00m 07s)",
			Line{Kind: LineAborted, Who: "kim@deploy1003", Program: "sync-world", Message: "x", Duration: 7 * time.Second, HasDuration: true}},
		{"!log kim@deploy1003 scap aborted: x", Line{Kind: LineAborted, Who: "kim@deploy1003", Message: "x"}},
		{"!log max@deploy1003 sync-world failed: <CalledProcessError> Command 'helmfile apply' returned non-zero exit status 1. (scap version: 4.140.0) (duration: 03m 00s)",
			Line{Kind: LineFailed, Who: "max@deploy1003", Program: "sync-world", Message: "<CalledProcessError> Command 'helmfile apply' returned non-zero exit status 1. (scap version: 4.140.0)", Duration: 3 * time.Minute, HasDuration: true}},
		{"!log sam@deploy2002 Locking from deployment [MediaWiki]: investigating T999",
			Line{Kind: LineLocked, Who: "sam@deploy2002", Repo: "MediaWiki", Message: "investigating T999"}},
		{"!log sam@deploy2002 Locking from deployment [ALL REPOSITORIES]: train blocker",
			Line{Kind: LineLocked, Who: "sam@deploy2002", Repo: "ALL REPOSITORIES", Message: "train blocker"}},
		{"!log sam@deploy2002 Unlocked for deployment [operations/deployment-charts]: done (duration: 07m 00s)",
			Line{Kind: LineUnlocked, Who: "sam@deploy2002", Repo: "operations/deployment-charts", Message: "done", Duration: 7 * time.Minute, HasDuration: true}},
		{"!log tyler@deploy1003 Forcefully removing global lock: holder went home",
			Line{Kind: LineForceUnlocked, Who: "tyler@deploy1003", Message: "holder went home"}},
	}
	for _, c := range cases {
		got, ok := ParseLine(c.text)
		if !ok || got != c.want {
			t.Errorf("ParseLine(%q)\n got %+v, %v\nwant %+v", c.text, got, ok, c.want)
		}
	}
}

func TestParseLineRejects(t *testing.T) {
	for _, text := range []string{
		"",
		"Started scap sync-world: no !log",
		"!logjdoe@deploy1003 Started scap sync-world: x",
		"!log jdoe Started scap sync-world: no user@host",
		"!log @deploy1003 Started scap sync-world: x",
		"!log jdoe@ Started scap sync-world: x",
		"!log jdoe@deploy1003 Started scaphold: x",
		"!log jdoe@deploy1003 Started scap sync world: two words",
		"!log jdoe@deploy1003 Synchronized php-1.44.0-wmf.8/includes/Foo.php: x (duration: 00m 40s)",
		"!log rzl@cumin1002 conftool action : set/pooled=true; selector: dnsdisc=apus,name=codfw",
		"!log rzl@cumin1002 END (FAIL) - Cookbook sre.foo (exit_code=99) restart failed: x",
		"!log rzl@cumin1002 Restart of docker-registry failed: x",
		"!log sam@deploy2002 Locking from deployment []: x",
		"!log sam@deploy2002 Locking from deployment [MediaWiki] x",
		"!log jdoe@deploy1003 Started scap sync-world: a\r\nPRIVMSG #x :injected",
		"!log jdoe@deploy1003 sync-world aborted:no space",
	} {
		if l, ok := ParseLine(text); ok {
			t.Errorf("ParseLine(%q) = %+v, want rejected", text, l)
		}
	}
}

func TestSplitDurationKeepsLookalikes(t *testing.T) {
	for _, s := range []string{"x (duration: 1m 2s", "x (duration: 01m 60s)", "x (duration: m 02s)", "x(duration: 01m 02s)", "(duration: 01m 02s) x"} {
		if msg, _, ok := splitDuration(s); ok || msg != s {
			t.Errorf("splitDuration(%q) = %q, %v", s, msg, ok)
		}
	}
}

// transcriptLine matches "<timestamp> <nick> <text>" in testdata/channel.
var transcriptLine = regexp.MustCompile(`^(\S+) <([^>]+)> (.*)$`)

type transcriptEntry struct {
	at   time.Time
	nick string
	text string
}

func readTranscript(t testing.TB) []transcriptEntry {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "channel", "transcript.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []transcriptEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := transcriptLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue // comments, actions, joins
		}
		at, err := time.Parse(time.RFC3339, m[1])
		if err != nil {
			t.Fatalf("transcript timestamp %q: %v", m[1], err)
		}
		out = append(out, transcriptEntry{at: at, nick: m[2], text: m[3]})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func FuzzParseLine(f *testing.F) {
	for _, e := range readTranscript(f) {
		f.Add(e.text)
	}
	f.Add("!log a@b x aborted: y (duration: 00m 01s)")
	f.Add("!log a@b scap scap failed:")
	f.Add("!log a@b Unlocked for deployment [r]: (duration: 01m 02s)")
	f.Add("!log a@b Forcefully removing global lock:")
	f.Fuzz(func(t *testing.T, text string) {
		l, ok := ParseLine(text)
		if !ok {
			if l != (Line{}) {
				t.Fatalf("rejected but returned %+v", l)
			}
			return
		}
		if l.Kind < LineStarted || l.Kind > LineForceUnlocked || !validWho(l.Who) || strings.ContainsAny(l.Who, " \r\n\x00") {
			t.Fatalf("bad line %+v", l)
		}
		if l.Program != "" && !validProgram(l.Program) {
			t.Fatalf("bad program %q", l.Program)
		}
		if (l.Kind == LineLocked || l.Kind == LineUnlocked) != (l.Repo != "") || strings.Contains(l.Repo, "]") {
			t.Fatalf("bad repo %+v", l)
		}
		if l.Duration < 0 || !l.HasDuration && l.Duration != 0 {
			t.Fatalf("bad duration %+v", l)
		}
		// Rendering in scap's format and parsing again gives the same line.
		again, ok := ParseLine(l.String())
		if !ok || again != l {
			t.Fatalf("round trip of %q\nrendered %q\n     got %+v, %v\n    want %+v", text, l.String(), again, ok, l)
		}
	})
}

func BenchmarkParseLine(b *testing.B) {
	lines := map[string]string{
		"started":  "!log jdoe@deploy1003 Started scap sync-world: Backport for [[gerrit:1101577|Fix foo (T123456)]]",
		"finished": "!log jdoe@deploy1003 Finished scap sync-world: Backport for [[gerrit:1101577|Fix foo (T123456)]] (duration: 08m 47s)",
		"noise":    "!log rzl@cumin1002 conftool action : set/pooled=true; selector: dnsdisc=apus,name=codfw",
		"chat":     "anyone deploying right now? I have a backport for T123456",
	}
	for _, name := range []string{"started", "finished", "noise", "chat"} {
		text := lines[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ParseLine(text)
			}
		})
	}
}
