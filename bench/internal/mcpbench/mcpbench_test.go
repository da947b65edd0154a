package mcpbench

import (
	"encoding/json"
	"testing"
)

func TestListAndCatalogAgree(t *testing.T) {
	var list struct {
		Tools []struct {
			Name string `json:"name"`
		} `json:"tools"`
	}
	if err := json.Unmarshal(ListResult(), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Tools) != Tools {
		t.Fatalf("%d tools listed, want %d", len(list.Tools), Tools)
	}
	tools := Catalog()["mcp"].(map[string]any)["catalogs"].(map[string]any)["bench"].(map[string]any)["tools"].(map[string]any)
	if len(tools) != Visible {
		t.Fatalf("catalog has %d tools, want %d", len(tools), Visible)
	}
	for i, tl := range list.Tools {
		_, inCatalog := tools[tl.Name]
		if inCatalog != (i < Visible) {
			t.Errorf("tool %d %s: in catalog %v", i, tl.Name, inCatalog)
		}
	}
	if e, _ := tools[CallTool].(map[string]any); e["access"] != "step_up" {
		t.Errorf("%s is %v, want a step-up tool", CallTool, e)
	}
	if _, ok := tools[HiddenTool]; ok {
		t.Errorf("%s is in the catalog", HiddenTool)
	}
}

func TestCheckList(t *testing.T) {
	full := ListResult()
	if err := CheckList(full, false); err != nil {
		t.Fatal(err)
	}
	if err := CheckList(full, true); err == nil {
		t.Fatal("the unfiltered list passed as filtered")
	}
	var list map[string][]json.RawMessage
	if err := json.Unmarshal(full, &list); err != nil {
		t.Fatal(err)
	}
	list["tools"] = list["tools"][:Visible]
	filtered, _ := json.Marshal(list)
	if err := CheckList(filtered, true); err != nil {
		t.Fatal(err)
	}
}
