package api

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"sort"
	"strconv"
	"sync"

	"go.yaml.in/yaml/v3"
)

// openapiYAML is the hand-written OpenAPI 3.1 document of the native API. openapi_test.go keeps
// it in step with the route table and checks real responses against it.
//
//go:embed openapi.yaml
var openapiYAML []byte

// openapiFragments are the surfaces' parts of the document (paths and components), merged into
// openapi.yaml so that each surface keeps its own file.
//
//go:embed openapi.d
var openapiFragments embed.FS

// openapiJSON converts the document once, on first use.
var openapiJSON = sync.OnceValues(func() ([]byte, error) {
	doc, err := mergedOpenAPI()
	if err != nil {
		return nil, err
	}
	return yamlToJSON(doc)
})

// mergedOpenAPI merges every openapi.d/*.yaml fragment into the main document. A path or
// component defined twice is an error.
func mergedOpenAPI() ([]byte, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(openapiYAML, &doc); err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	names, err := fs.Glob(openapiFragments, "openapi.d/*.yaml")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	for _, name := range names {
		raw, err := openapiFragments.ReadFile(name)
		if err != nil {
			return nil, err
		}
		var frag map[string]any
		if err := yaml.Unmarshal(raw, &frag); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		for key, v := range frag {
			switch key {
			case "paths":
				if err := mergeInto(doc, "paths", v, name); err != nil {
					return nil, err
				}
			case "components":
				comps, _ := v.(map[string]any)
				for kind, c := range comps {
					if doc["components"] == nil {
						doc["components"] = map[string]any{}
					}
					if err := mergeInto(doc["components"].(map[string]any), kind, c, name); err != nil {
						return nil, err
					}
				}
			default:
				return nil, fmt.Errorf("%s: fragments may only hold paths and components, not %q", name, key)
			}
		}
	}
	return yaml.Marshal(doc)
}

// mergeInto adds the entries of the mapping v under parent[key], refusing duplicates.
func mergeInto(parent map[string]any, key string, v any, from string) error {
	add, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("%s: %s must be a mapping", from, key)
	}
	dst, _ := parent[key].(map[string]any)
	if dst == nil {
		dst = map[string]any{}
		parent[key] = dst
	}
	for k, e := range add {
		if _, dup := dst[k]; dup {
			return fmt.Errorf("%s: %s %q is already defined", from, key, k)
		}
		dst[k] = e
	}
	return nil
}

// OpenAPIJSON returns a copy of the OpenAPI document as JSON. The embedded YAML is checked by
// the tests, so a conversion failure is a build defect and panics.
func OpenAPIJSON() []byte {
	b, err := openapiJSON()
	if err != nil {
		panic("api: embedded openapi.yaml: " + err.Error())
	}
	return bytes.Clone(b)
}

// serveOpenAPI answers GET /v1/openapi.json.
func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	b, err := openapiJSON()
	if err != nil {
		writeProblem(w, problem(http.StatusInternalServerError, "internal", "Something went wrong on our side; it has been logged."))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-cache")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// yamlToJSON decodes one YAML document and encodes it as JSON.
func yamlToJSON(src []byte) ([]byte, error) {
	var v any
	if err := yaml.Unmarshal(src, &v); err != nil {
		return nil, err
	}
	v, err := jsonValue(v)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// jsonValue rewrites what yaml.v3 decodes into something encoding/json accepts: mappings with
// non-string keys (map[any]any, e.g. an unquoted status code) become map[string]any.
func jsonValue(v any) (any, error) {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			e, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			t[k] = e
		}
		return t, nil
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			var key string
			switch k := k.(type) {
			case string:
				key = k
			case int, int64, uint64, bool, float64:
				key = fmt.Sprint(k)
			default:
				return nil, fmt.Errorf("unsupported mapping key %v (%T)", k, k)
			}
			if _, dup := m[key]; dup {
				return nil, fmt.Errorf("mapping key %q appears twice", key)
			}
			e, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			m[key] = e
		}
		return m, nil
	case []any:
		for i, e := range t {
			e, err := jsonValue(e)
			if err != nil {
				return nil, err
			}
			t[i] = e
		}
		return t, nil
	}
	return v, nil
}
