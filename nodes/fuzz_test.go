package nodes

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzValidateConfig feeds arbitrary bytes to every type: nothing may panic,
// every problem is well formed, and a config that passes has usable branches.
func FuzzValidateConfig(f *testing.F) {
	for _, cases := range configCases {
		for _, c := range cases {
			f.Add([]byte(c.config))
		}
	}
	for _, seed := range []string{``, `null`, `[]`, `{"schedule":"TZ="}`, `{"schedule":"CRON_TZ="}`, `{"expression":"(((("}`,
		`{"variants":[{"key":"a","weight":1e400},{"key":"a","weight":-0}]}`, "{\"tag\":\"\xff\"}", `{"a":1,"a":2}`} {
		f.Add([]byte(seed))
	}
	types := Default().Catalog()
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, info := range types {
			typ, _ := Default().Get(info.Type)
			config := json.RawMessage(data)
			problems := typ.ValidateConfig(config)
			for _, p := range problems {
				if p.Code != "invalid_config" || p.Message == "" || (p.Field != "" && !strings.HasPrefix(p.Field, "/")) {
					t.Fatalf("%s: malformed problem %+v", info.Type, p)
				}
			}
			branches := typ.Branches(config)
			typ.Terminal(config)
			if len(problems) > 0 {
				continue
			}
			seen := map[string]bool{}
			for _, b := range branches {
				if b == "" || seen[b] {
					t.Fatalf("%s: valid config %q emits branches %q", info.Type, data, branches)
				}
				seen[b] = true
			}
		}
	})
}
