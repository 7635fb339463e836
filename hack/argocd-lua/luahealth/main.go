// Command gonka-argocd-lua runs Argo CD health checks through Argo CD's own Lua VM
// (github.com/argoproj/argo-cd/v3/util/lua, gopher-lua: Lua 5.1), in the two ways Argo CD runs them:
//
//   - "upstream": the way upstream's own harness runs a resource_customizations/<group>/<Kind>
//     directory (util/lua/health_test.go TestLuaHealthScript: VM{UseOpenLibs: true},
//     ExecuteHealthLua on each testdata object of health_test.yaml);
//   - "argocd-cm": the way the application-controller runs a script installed through the argocd-cm
//     ConfigMap (ResourceHealthOverrides.GetResourceHealth), with the overrides built from the
//     ConfigMap's resource.customizations.<health|useOpenLibs>.<group_Kind> keys by the rule of
//     util/settings/settings.go appendResourceOverridesFromSplitKeys. Without a useOpenLibs key the
//     standard libraries (string, math, ...) are absent;
//   - "controller": what the application-controller shows for the object, i.e. gitops-engine's
//     health.GetResourceHealth with those overrides (which also folds a terminating object's
//     deletionMessage into the message).
//
// Usage:
//
//	gonka-argocd-lua tests <resource_customizations dir> <argocd-cm.yaml>
//	    every health_test.yaml below the dir, both modes; one JSON object per line
//	gonka-argocd-lua eval <argocd-cm.yaml>
//	    stdin: JSON [{"script": path|"", "object": {...}}]; stdout: JSON [{"upstream":..., "argocd-cm":..., "controller":...}]
//	    ("script" empty: only argocd-cm mode, script chosen from the ConfigMap by the object's kind)
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/health"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	appv1 "github.com/argoproj/argo-cd/v3/pkg/apis/application/v1alpha1"
	"github.com/argoproj/argo-cd/v3/util/lua"
)

type verdict struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
	// DeletionMessage: a check's message for a terminating object (Argo CD v3.6+).
	DeletionMessage string `json:"deletionMessage,omitempty"`
	Error   string `json:"error,omitempty"`
	None    bool   `json:"none,omitempty"` // the script returned nil / no script for the kind
}

func fromResult(hs *health.HealthStatus, err error) verdict {
	if err != nil {
		return verdict{Error: err.Error()}
	}
	if hs == nil {
		return verdict{None: true}
	}
	return verdict{Status: string(hs.Status), Message: hs.Message, DeletionMessage: hs.DeletionMessage}
}

// overridesFromConfigMap follows util/settings appendResourceOverridesFromSplitKeys for the keys
// a health check uses.
func overridesFromConfigMap(path string) (lua.ResourceHealthOverrides, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(raw, &cm); err != nil {
		return nil, err
	}
	out := lua.ResourceHealthOverrides{}
	for k, v := range cm.Data {
		parts := strings.SplitN(k, ".", 4)
		if len(parts) < 4 || parts[0]+"."+parts[1] != "resource.customizations" {
			continue
		}
		gk := strings.Split(parts[3], "_")
		key := parts[3]
		if len(gk) == 2 {
			key = gk[0] + "/" + gk[1]
		} else if len(gk) != 1 || key == "" {
			return nil, fmt.Errorf("bad group kind in %q", k)
		}
		o := out[key]
		switch parts[2] {
		case "health":
			o.HealthLua = v
		case "useOpenLibs":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			o.UseOpenLibs = b
		default:
			return nil, fmt.Errorf("customization type %s not handled here", parts[2])
		}
		out[key] = o
	}
	return out, nil
}

func upstream(scriptPath string, obj *unstructured.Unstructured) verdict {
	script, err := os.ReadFile(scriptPath)
	if err != nil {
		return verdict{Error: err.Error()}
	}
	vm := lua.VM{UseOpenLibs: true}
	return fromResult(vm.ExecuteHealthLua(obj, string(script)))
}

type testFile struct {
	Tests []struct {
		InputPath    string               `json:"inputPath"`
		HealthStatus *health.HealthStatus `json:"healthStatus"`
	} `json:"tests"`
}

type testResult struct {
	Dir       string  `json:"dir"`
	InputPath string  `json:"inputPath"`
	Mode      string  `json:"mode"`
	Want      verdict `json:"want"`
	Got       verdict `json:"got"`
}

func readObject(path string) (*unstructured.Unstructured, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	obj := map[string]any{}
	if err := yaml.Unmarshal(raw, &obj); err != nil {
		return nil, err
	}
	return &unstructured.Unstructured{Object: obj}, nil
}

func runTests(root, cmPath string) error {
	overrides, err := overridesFromConfigMap(cmPath)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	return filepath.Walk(root, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.Name() != "health.lua" {
			return err
		}
		dir := filepath.Dir(path)
		raw, err := os.ReadFile(filepath.Join(dir, "health_test.yaml"))
		if err != nil {
			return err
		}
		var tf testFile
		if err := yaml.Unmarshal(raw, &tf); err != nil {
			return fmt.Errorf("%s: %w", dir, err)
		}
		rel, _ := filepath.Rel(root, dir)
		for _, t := range tf.Tests {
			want := fromResult(t.HealthStatus, nil)
			obj, err := readObject(filepath.Join(dir, t.InputPath))
			if err != nil {
				return err
			}
			for _, mode := range []string{"upstream", "argocd-cm", "controller"} {
				var got verdict
				switch mode {
				case "upstream":
					got = upstream(path, obj)
				case "argocd-cm":
					got = fromResult(overrides.GetResourceHealth(obj))
				default:
					got = fromResult(health.GetResourceHealth(obj, overrides))
				}
				if err := enc.Encode(testResult{rel, t.InputPath, mode, want, got}); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

func runEval(cmPath string) error {
	overrides, err := overridesFromConfigMap(cmPath)
	if err != nil {
		return err
	}
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		return err
	}
	var in []struct {
		Script string         `json:"script"`
		Object map[string]any `json:"object"`
	}
	if err := json.Unmarshal(raw, &in); err != nil {
		return err
	}
	out := make([]map[string]verdict, 0, len(in))
	for _, item := range in {
		obj := &unstructured.Unstructured{Object: item.Object}
		r := map[string]verdict{
			"argocd-cm":  fromResult(overrides.GetResourceHealth(obj)),
			"controller": fromResult(health.GetResourceHealth(obj, overrides)),
		}
		if item.Script != "" {
			r["upstream"] = upstream(item.Script, obj)
		}
		out = append(out, r)
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

// Compile-time check that the override type is the one the controller uses.
var _ map[string]appv1.ResourceOverride = lua.ResourceHealthOverrides{}

func main() {
	var err error
	switch {
	case len(os.Args) == 4 && os.Args[1] == "tests":
		err = runTests(os.Args[2], os.Args[3])
	case len(os.Args) == 3 && os.Args[1] == "eval":
		err = runEval(os.Args[2])
	default:
		fmt.Fprintln(os.Stderr, "usage: gonka-argocd-lua tests <dir> <argocd-cm.yaml> | eval <argocd-cm.yaml>")
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gonka-argocd-lua:", err)
		os.Exit(1)
	}
}
