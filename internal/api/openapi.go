package api

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"

	"go.yaml.in/yaml/v3"
)

// openapiYAML is the hand-written OpenAPI 3.1 document of the native API. openapi_test.go keeps
// it in step with the route table and checks real responses against it.
//
//go:embed openapi.yaml
var openapiYAML []byte

// openapiJSON converts the document once, on first use.
var openapiJSON = sync.OnceValues(func() ([]byte, error) { return yamlToJSON(openapiYAML) })

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
