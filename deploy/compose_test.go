package deploy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

func loadProject(t *testing.T) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions(
		[]string{"../docker-compose.yml"},
		cli.WithWorkingDirectory(".."),
		cli.WithEnv([]string{}), // CI's environment must not change what the file means
		cli.WithResolvedPaths(true),
		cli.WithConsistency(true),
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	return p
}

func TestComposeTopology(t *testing.T) {
	p := loadProject(t)
	want := []string{"postgresql", "temporal-schema", "temporal", "temporal-ui", "worker", "worker-codec", "gateway"}
	for _, name := range want {
		if _, err := p.GetService(name); err != nil {
			t.Errorf("service %s missing: %v", name, err)
		}
	}

	temporal, _ := p.GetService("temporal")
	if db := temporal.Environment["DB"]; db == nil || *db != "postgres12" {
		t.Errorf("temporal must persist to PostgreSQL (DB=postgres12), got %v", db)
	}
	if seeds := temporal.Environment["POSTGRES_SEEDS"]; seeds == nil || *seeds != "postgresql" {
		t.Errorf("temporal must point at the postgresql service, got %v", seeds)
	}

	dependsOn := map[string]map[string]string{
		"temporal-schema": {"postgresql": types.ServiceConditionHealthy},
		"temporal":        {"temporal-schema": types.ServiceConditionCompletedSuccessfully},
		"temporal-ui":     {"temporal": types.ServiceConditionHealthy},
		"worker":          {"temporal": types.ServiceConditionHealthy, "postgresql": types.ServiceConditionHealthy},
		"worker-codec":    {"temporal": types.ServiceConditionHealthy, "postgresql": types.ServiceConditionHealthy},
		"gateway":         {"temporal": types.ServiceConditionHealthy, "postgresql": types.ServiceConditionHealthy},
	}
	for svc, deps := range dependsOn {
		s, _ := p.GetService(svc)
		for dep, cond := range deps {
			if got, ok := s.DependsOn[dep]; !ok || got.Condition != cond {
				t.Errorf("%s must depend on %s (%s), got %+v", svc, dep, cond, s.DependsOn[dep])
			}
		}
	}
	for _, svc := range []string{"postgresql", "temporal"} {
		if s, _ := p.GetService(svc); s.HealthCheck == nil || len(s.HealthCheck.Test) == 0 {
			t.Errorf("%s needs a health check: others wait on it", svc)
		}
	}
}

// Only the gateway faces the outside; the Web UI is for operators on the
// admin interface; the databases and Temporal publish nothing.
func TestComposeExposure(t *testing.T) {
	p := loadProject(t)
	for _, s := range p.Services {
		for _, port := range s.Ports {
			switch {
			case s.Name == "gateway":
			case s.Name == "temporal-ui" && port.HostIP == "127.0.0.1":
			case s.Name == "worker-codec" && port.HostIP == "127.0.0.1":
			default:
				t.Errorf("service %s publishes port %s on %q", s.Name, port.Published, port.HostIP)
			}
		}
	}
	gw, _ := p.GetService("gateway")
	var published []string
	for _, port := range gw.Ports {
		published = append(published, port.Published)
	}
	if !slices.Contains(published, "8443") || !slices.Contains(published, "8444") {
		t.Errorf("gateway must publish 8443 (clients) and 8444 (notifications), got %v", published)
	}
	if net, ok := p.Networks["intranet"]; !ok || !net.Internal {
		t.Error("the intranet network must be internal (no route out)")
	}
}

var secretish = regexp.MustCompile(`(?i)(PASSWORD|PWD|PIN|SECRET|TOKEN_KEY)`)

// Secrets come from files only: an environment variable that names a secret
// must point at a file (…_FILE), and every file-backed secret is declared.
func TestComposeSecretsOnlyFromFiles(t *testing.T) {
	p := loadProject(t)
	for _, s := range p.Services {
		for k, v := range s.Environment {
			if secretish.MatchString(k) && !strings.HasSuffix(k, "_FILE") {
				t.Errorf("%s: environment %s carries a secret value; use %s_FILE and a docker secret", s.Name, k, k)
			}
			if strings.HasSuffix(k, "_FILE") && v != nil && strings.HasPrefix(*v, "/run/secrets/") {
				name := strings.TrimPrefix(*v, "/run/secrets/")
				if !slices.ContainsFunc(s.Secrets, func(r types.ServiceSecretConfig) bool { return r.Source == name }) {
					t.Errorf("%s: %s points at secret %s that the service does not mount", s.Name, k, name)
				}
			}
		}
		for _, ref := range s.Secrets {
			sec, ok := p.Secrets[ref.Source]
			if !ok || sec.File == "" {
				t.Errorf("%s: secret %s is not declared with a file source", s.Name, ref.Source)
			}
		}
	}
}

// Every file the compose file mounts from the repository exists.
func TestComposeMountedFilesExist(t *testing.T) {
	p := loadProject(t)
	root, _ := filepath.Abs("..")
	for _, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind || !strings.HasPrefix(v.Source, root) {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("%s mounts %s, which is missing", s.Name, v.Source)
			}
		}
		if s.Build != nil {
			df := filepath.Join(s.Build.Context, s.Build.Dockerfile)
			if _, err := os.Stat(df); err != nil {
				t.Errorf("%s builds from %s, which is missing", s.Name, df)
			}
		}
	}
}

// Payloads are encrypted by every GridPay program with the same key, and
// the Web UI decrypts them through worker-codec, which answers the UI's
// origin only.
func TestComposePayloadCodec(t *testing.T) {
	p := loadProject(t)
	env := func(svc, key string) string {
		s, err := p.GetService(svc)
		if err != nil {
			t.Fatal(err)
		}
		if v := s.Environment[key]; v != nil {
			return *v
		}
		return ""
	}
	for _, svc := range []string{"worker", "worker-codec", "gateway"} {
		if env(svc, "GRIDPAY_TEMPORAL_CODEC_KEY_LABEL") != "gridpay-payload-key" {
			t.Errorf("%s does not encrypt with gridpay-payload-key", svc)
		}
		if env(svc, "GRIDPAY_TEMPORAL_CODEC_DISABLED") != "" {
			t.Errorf("%s switches the payload codec off", svc)
		}
		// The merge of the shared environment kept everything else.
		if env(svc, "GRIDPAY_HSM_PIN_FILE") == "" || env(svc, "GRIDPAY_TEMPORAL_ADDRESS") != "temporal:7233" {
			t.Errorf("%s lost the shared environment", svc)
		}
	}
	if env("worker", "GRIDPAY_TEMPORAL_CODEC_LISTEN") != "" {
		t.Error("the scaled-out workers must not serve the codec endpoint (one address for the UI)")
	}
	listen := env("worker-codec", "GRIDPAY_TEMPORAL_CODEC_LISTEN")
	_, port, _ := strings.Cut(listen, ":")
	codec, _ := p.GetService("worker-codec")
	if codec.Deploy != nil && codec.Deploy.Replicas != nil && *codec.Deploy.Replicas != 1 {
		t.Errorf("worker-codec runs %d replicas; the UI calls one address", *codec.Deploy.Replicas)
	}
	var published string
	for _, pp := range codec.Ports {
		if fmt.Sprint(pp.Target) == port {
			published = "http://" + pp.HostIP + ":" + pp.Published
		}
	}
	if published == "" || env("temporal-ui", "TEMPORAL_CODEC_ENDPOINT") != published {
		t.Errorf("temporal-ui's TEMPORAL_CODEC_ENDPOINT %q is not worker-codec's published endpoint %q (listen %s)",
			env("temporal-ui", "TEMPORAL_CODEC_ENDPOINT"), published, listen)
	}
	ui, _ := p.GetService("temporal-ui")
	var uiOrigin string
	for _, pp := range ui.Ports {
		uiOrigin = "http://" + pp.HostIP + ":" + pp.Published
	}
	if got := env("worker-codec", "GRIDPAY_TEMPORAL_CODEC_UI_ORIGIN"); got != uiOrigin {
		t.Errorf("worker-codec allows origin %q; the Web UI is at %q", got, uiOrigin)
	}
}

// Every worker (each runs the audit-anchor schedule's activity) writes
// audit anchors to the same volume, outside PostgreSQL, and keeps the HSM.
func TestComposeAuditAnchors(t *testing.T) {
	p := loadProject(t)
	for _, name := range []string{"worker", "worker-codec"} {
		svc, err := p.GetService(name)
		if err != nil {
			t.Fatal(err)
		}
		dir := svc.Environment["GRIDPAY_AUDIT_ANCHOR_DIR"]
		if dir == nil || *dir == "" {
			t.Fatalf("%s has no audit.anchor_dir", name)
		}
		var anchors, hsm bool
		for _, v := range svc.Volumes {
			anchors = anchors || (v.Type == types.VolumeTypeVolume && v.Source == "audit-anchors" && v.Target == *dir && !v.ReadOnly)
			hsm = hsm || (v.Target == "/opt/hsm" && v.ReadOnly)
		}
		if !anchors || !hsm {
			t.Errorf("%s: anchor volume at %s %v, HSM library %v: %+v", name, *dir, anchors, hsm, svc.Volumes)
		}
	}
	if _, ok := p.Volumes["audit-anchors"]; !ok {
		t.Error("the audit-anchors volume is not declared")
	}
	pg, _ := p.GetService("postgresql")
	for _, v := range pg.Volumes {
		if v.Source == "audit-anchors" {
			t.Error("PostgreSQL must not reach the audit anchors")
		}
	}
}
