package policy

import (
	"encoding/json"

	"go.yaml.in/yaml/v3"
)

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

func yamlUnmarshal(s string, v any) error { return yaml.Unmarshal([]byte(s), v) }
