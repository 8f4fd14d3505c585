package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeSchema(t *testing.T, dir, topic, name, schema string) {
	t.Helper()
	folder := filepath.Join(dir, topic)
	if err := os.MkdirAll(folder, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(folder, name), []byte(schema), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestTheNewestRevisionIsUsed(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"1.schema.json", "2.schema.json", "10.schema.json"} {
		writeSchema(t, dir, "a.v1", name, `{"required": ["`+strings.TrimSuffix(name, ".schema.json")+`"]}`)
	}
	writeSchema(t, dir, "a.v1", "10.examples.json", `[]`)
	schemas, err := LoadSchemas(dir, []string{"a.v1"})
	if err != nil {
		t.Fatal(err)
	}
	schema := schemas["a.v1"]
	if schema.Revision != 10 {
		t.Fatalf("revision %d, want 10 (by number, not by name)", schema.Revision)
	}
	if err := schema.Validate([]byte(`{"10": true}`)); err != nil {
		t.Fatalf("revision 10's document refused: %v", err)
	}
	if err := schema.Validate([]byte(`{"2": true}`)); err == nil {
		t.Fatal("revision 10 accepted a document without its required field")
	}
}

func TestATopicWithoutSchemaIsAnError(t *testing.T) {
	dir := t.TempDir()
	writeSchema(t, dir, "a.v1", "notes.json", `{}`)
	if _, err := LoadSchemas(dir, []string{"a.v1"}); err == nil || !strings.Contains(err.Error(), "a.v1") {
		t.Fatalf("error %v, want one naming the topic", err)
	}
}

func TestReasonsNameFieldsNotValues(t *testing.T) {
	dir := t.TempDir()
	writeSchema(t, dir, "a.v1", "1.schema.json", `{
		"$schema": "https://json-schema.org/draft/2020-12/schema",
		"type": "object",
		"required": ["id", "at", "kind"],
		"properties": {
			"at": {"type": "string", "format": "date-time", "pattern": "^[0-9]{4}-"},
			"kind": {"enum": ["up", "down"]},
			"note": {"anyOf": [{"type": "string"}, {"type": "null"}]}
		}
	}`)
	schemas, err := LoadSchemas(dir, []string{"a.v1"})
	if err != nil {
		t.Fatal(err)
	}
	err = schemas["a.v1"].Validate([]byte(`{"at": "secret-time", "kind": "secret-value", "note": 3}`))
	if err == nil {
		t.Fatal("an invalid document was accepted")
	}
	want := "a.v1 schema 1: /: required id missing; /at: fails pattern; /kind: fails enum; /note: fails anyOf"
	if err.Error() != want {
		t.Fatalf("reason %q, want %q", err.Error(), want)
	}
	if err := schemas["a.v1"].Validate([]byte(`{"id": 1,`)); err == nil || err.Error() != "not JSON" {
		t.Fatalf("broken JSON: %v, want not JSON", err)
	}
}

// committedSchemas are the repository's docs/schemas, which the program reads by default.
func committedSchemas(t *testing.T) map[string]*TopicSchema {
	t.Helper()
	schemas, err := LoadSchemas(filepath.Join("..", "..", "docs", "schemas"), Topics)
	if err != nil {
		t.Fatalf("the committed schemas: %v", err)
	}
	return schemas
}

// Every committed example of the newest revisions is valid here and applies.
func TestCommittedExamplesApply(t *testing.T) {
	schemas := committedSchemas(t)
	for _, topic := range Topics {
		path := strings.TrimSuffix(schemas[topic].Path, ".schema.json") + ".examples.json"
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("the examples beside the schema: %v", err)
		}
		var examples []json.RawMessage
		if err := json.Unmarshal(data, &examples); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(examples) == 0 {
			t.Fatalf("%s: no examples", path)
		}
		for i, example := range examples {
			record := Record{Topic: topic, Key: []byte("C0001234"), Value: example}
			if string(example) == "null" {
				record.Value = nil // a tombstone
			} else {
				var event struct {
					CustomerID string `json:"customer_id"`
				}
				if err := json.Unmarshal(example, &event); err != nil {
					t.Fatalf("%s[%d]: %v", path, i, err)
				}
				record.Key = []byte(event.CustomerID)
			}
			result := NewSubscriber(schemas, "").Handle(record)
			if result.Kind == InvalidRecord || result.Outcome != Applied {
				t.Errorf("%s[%d] not applied: %+v", path, i, result.Line)
			}
		}
	}
}
