package listfilter

import (
	"reflect"
	"testing"

	"github.com/mcp-pdp/pdp/internal/decision"
)

// The fast path gives the List encoding/json's path gives, or stands aside.
func FuzzParseFast(f *testing.F) {
	for _, s := range []string{
		`{"tools":[{"name":"ping"},{"name":"x","_meta":{"a":1},"annotations":{"readOnlyHint":true}}],"nextCursor":"c"}`,
		`{"tools":[ { "name" : "generate_qr_url" , "securitySchemes":[] , "inputSchema":{"type":"object","properties":{"a":{"type":"string","description":"}]\""}}}} ]}`,
		`{"tools":[{"name":"a\u0041","Name":"b"}]}`,
		`{"tools":[{"name":"a","name":"b","annotations":null}]}`,
		`{"tools":[{"name":null}]}`, `{"tools":[{"name":1}]}`, `{"tools":[1]}`, `{"tools":{}}`,
		`{"tools":[],"tools":[]}`, `{"x":1}`, `{"tools":[{"name":"a"}]} 1`, `{"t\u006fols":[{"name":"a"}]}`,
		`{"resources":[{"uri":"ui://a","name":"A"}]}`, `{"resourceTemplates":[{"uriTemplate":"file:///{p}","name":"T"}]}`,
		`{"tools":[{"name":"\ud800"}]}`, `{"tools":[{"n\u0061me":"x"}]}`, `{"tools":[{"nAme":"x","name":"y"}]}`,
	} {
		f.Add(s)
	}
	classes := []decision.Method{
		decision.ClassifyMethod("tools/list"), decision.ClassifyMethod("prompts/list"),
		decision.ClassifyMethod("resources/list"), decision.ClassifyMethod("resources/templates/list"),
	}
	f.Fuzz(func(t *testing.T, result string) {
		for _, class := range classes {
			got, ok := parseFast(class, []byte(result), false)
			if !ok {
				continue
			}
			want, err := parseStd(class, []byte(result))
			if err != nil {
				t.Fatalf("%s: fast path took %q, encoding/json's: %v", class.ListKey, result, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: %q\nfast %+v\nstd  %+v", class.ListKey, result, got, want)
			}
		}
	})
}
