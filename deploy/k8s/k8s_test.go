package k8s

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/playgate/playgate/signer/trackcache"
)

type object struct {
	APIVersion string         `yaml:"apiVersion"`
	Kind       string         `yaml:"kind"`
	Metadata   map[string]any `yaml:"metadata"`
	Spec       map[string]any `yaml:"spec"`
	Data       map[string]any `yaml:"data"`
}

func load(t *testing.T) []object {
	files, err := filepath.Glob("*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	var out []object
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		for {
			var o object
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err, f)
			require.NotEmpty(t, o.APIVersion, f)
			require.NotEmpty(t, o.Kind, f)
			require.NotEmpty(t, o.Metadata["name"], "%s: a %s without a name", f, o.Kind)
			out = append(out, o)
		}
	}
	return out
}

func get(m any, path ...string) any {
	for _, p := range path {
		mm, ok := m.(map[string]any)
		if !ok {
			return nil
		}
		m = mm[p]
	}
	return m
}

// The manifests hang together: probes and resources on every container,
// configuration that exists, Services, the HPA and PDBs that select
// what the Deployments label.
func TestManifests(t *testing.T) {
	objs := load(t)
	podLabels := map[string]map[string]any{} // deployment name -> pod labels
	configMaps := map[string]bool{}
	for _, o := range objs {
		if o.Kind == "ConfigMap" {
			configMaps[o.Metadata["name"].(string)] = true
		}
	}
	for _, o := range objs {
		if o.Kind == "Job" {
			checkJob(t, o, configMaps)
			continue
		}
		if o.Kind != "Deployment" {
			continue
		}
		name := o.Metadata["name"].(string)
		labels, _ := get(o.Spec, "template", "metadata", "labels").(map[string]any)
		require.NotEmpty(t, labels, name)
		selector, _ := get(o.Spec, "selector", "matchLabels").(map[string]any)
		for k, v := range selector {
			assert.Equal(t, v, labels[k], "%s: the selector matches the pod labels", name)
		}
		podLabels[name] = labels
		assert.Equal(t, true, get(o.Spec, "template", "spec", "securityContext", "runAsNonRoot"), name)
		containers, _ := get(o.Spec, "template", "spec", "containers").([]any)
		require.NotEmpty(t, containers, name)
		for _, c := range containers {
			assert.NotEmpty(t, get(c, "image"), name)
			assert.NotEmpty(t, get(c, "resources", "requests", "cpu"), "%s: cpu request", name)
			assert.NotEmpty(t, get(c, "resources", "requests", "memory"), "%s: memory request", name)
			assert.NotEmpty(t, get(c, "resources", "limits", "memory"), "%s: memory limit", name)
			if name != "playgate-worker" { // the worker serves no HTTP
				assert.Equal(t, "/healthz", get(c, "livenessProbe", "httpGet", "path"), name)
				assert.Equal(t, "/readyz", get(c, "readinessProbe", "httpGet", "path"), name)
				// A server stops accepting at SIGTERM; the pre-stop sleep
				// covers the time Services take to stop sending it
				// connections, and the grace period covers the sleep and
				// the longest drain after it (the api's, 15 s).
				sleep, _ := get(c, "lifecycle", "preStop", "sleep", "seconds").(int)
				assert.GreaterOrEqual(t, sleep, 5, "%s: pre-stop sleep", name)
				grace, _ := get(o.Spec, "template", "spec", "terminationGracePeriodSeconds").(int)
				assert.GreaterOrEqual(t, grace, sleep+15, "%s: grace period", name)
			}
			checkMemoryLimits(t, name, c)
			from, _ := get(c, "envFrom").([]any)
			for _, f := range from {
				if cm := get(f, "configMapRef", "name"); cm != nil {
					assert.True(t, configMaps[cm.(string)], "%s: ConfigMap %v exists", name, cm)
				}
			}
		}
	}
	matches := func(selector map[string]any) bool {
		for _, labels := range podLabels {
			ok := true
			for k, v := range selector {
				ok = ok && labels[k] == v
			}
			if ok {
				return true
			}
		}
		return false
	}
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.Kind]++
		switch o.Kind {
		case "Service":
			sel, _ := o.Spec["selector"].(map[string]any)
			assert.True(t, matches(sel), "Service %v selects a Deployment's pods", o.Metadata["name"])
		case "PodDisruptionBudget":
			sel, _ := get(o.Spec, "selector", "matchLabels").(map[string]any)
			assert.True(t, matches(sel), "PDB %v selects a Deployment's pods", o.Metadata["name"])
		case "HorizontalPodAutoscaler":
			target := get(o.Spec, "scaleTargetRef", "name")
			_, ok := podLabels[target.(string)]
			assert.True(t, ok, "the HPA scales an existing Deployment, not %v", target)
			assert.Equal(t, "playgate-signer", target, "the signer is what scales")
		}
	}
	for _, k := range []string{"Deployment", "Service", "ConfigMap", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Job"} {
		assert.Positive(t, kinds[k], "a %s is defined", k)
	}
}

// checkJob: the migration Job runs `api migrate` once, as the services
// run, with their configuration.
func checkJob(t *testing.T, o object, configMaps map[string]bool) {
	t.Helper()
	name := o.Metadata["name"].(string)
	assert.Equal(t, "Never", get(o.Spec, "template", "spec", "restartPolicy"), name)
	assert.Equal(t, true, get(o.Spec, "template", "spec", "securityContext", "runAsNonRoot"), name)
	containers, _ := get(o.Spec, "template", "spec", "containers").([]any)
	require.Len(t, containers, 1, name)
	c := containers[0]
	assert.Equal(t, []any{"/api", "migrate"}, get(c, "args"), name)
	checkMemoryLimits(t, name, c)
	from, _ := get(c, "envFrom").([]any)
	require.NotEmpty(t, from, "%s: the services' configuration", name)
	for _, f := range from {
		if cm := get(f, "configMapRef", "name"); cm != nil {
			assert.True(t, configMaps[cm.(string)], "%s: ConfigMap %v exists", name, cm)
		}
	}
}

// checkMemoryLimits: a Go process knows nothing of its container's memory
// limit, and by default lets its heap grow to twice what is live between
// collections. So every container sets GOMEMLIMIT, with room below the
// limit for what is not Go heap; and the signer's cache, full, leaves the
// collector room below GOMEMLIMIT, or it would collect without pause.
func checkMemoryLimits(t *testing.T, name string, container any) {
	t.Helper()
	limit, err := kubeQuantity(fmt.Sprint(get(container, "resources", "limits", "memory")))
	require.NoError(t, err, name)
	env := map[string]string{}
	list, _ := get(container, "env").([]any)
	for _, e := range list {
		env[fmt.Sprint(get(e, "name"))] = fmt.Sprint(get(e, "value"))
	}
	goLimit, err := goMemLimit(env["GOMEMLIMIT"])
	require.NoError(t, err, "%s: GOMEMLIMIT", name)
	assert.LessOrEqual(t, goLimit, limit*9/10, "%s: GOMEMLIMIT leaves a tenth of the memory limit to what is not heap", name)
	if name == "playgate-signer" {
		cache, err := strconv.ParseInt(env["SIGNER_CACHE_BYTES"], 10, 64)
		require.NoError(t, err, "%s: SIGNER_CACHE_BYTES is set beside GOMEMLIMIT", name)
		assert.True(t, trackcache.FitsIn(cache, goLimit),
			"%s: a full cache of %d bytes (%d of heap) fits in four fifths of GOMEMLIMIT (%d)", name, cache, trackcache.FullHeap(cache), goLimit)
	}
}

// kubeQuantity parses the binary-suffixed memory quantities the
// manifests use (Ki, Mi, Gi).
func kubeQuantity(q string) (int64, error) {
	return withUnit(q, []unit{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}})
}

// goMemLimit parses GOMEMLIMIT as the Go runtime does (KiB, MiB, GiB, B).
func goMemLimit(v string) (int64, error) {
	return withUnit(v, []unit{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"B", 1}})
}

type unit struct {
	suffix string
	bytes  int64
}

// withUnit parses a number followed by the first of units it ends with
// (so list "MiB" before "B").
func withUnit(v string, units []unit) (int64, error) {
	for _, u := range units {
		if n, ok := strings.CutSuffix(v, u.suffix); ok {
			i, err := strconv.ParseInt(n, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%q: %w", v, err)
			}
			return i * u.bytes, nil
		}
	}
	return 0, fmt.Errorf("%q: no unit of %v", v, units)
}
