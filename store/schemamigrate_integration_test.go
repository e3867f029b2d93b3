//go:build integration

package store

import (
	"strings"
	"testing"
	"testing/fstest"
)

// Another program's migrations in its own schema: applied once, an edited
// or unknown applied migration refused.
func TestMigrateSchema(t *testing.T) {
	ctx := testContext(t)
	db := migratedDB(t)
	files := fstest.MapFS{
		"m/0001_init.up.sql":   {Data: []byte(`CREATE TABLE other_sim.things (id int PRIMARY KEY)`)},
		"m/0002_more.up.sql":   {Data: []byte(`INSERT INTO other_sim.things VALUES (1)`)},
		"m/0002_more.down.sql": {Data: []byte(`DELETE FROM other_sim.things`)},
	}
	for range 2 {
		if err := MigrateSchema(ctx, db, files, "m", "other_sim", 42); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM other_sim.things`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("rows %d %v: each migration should run once", n, err)
	}
	edited := fstest.MapFS{"m/0001_init.up.sql": files["m/0001_init.up.sql"], "m/0002_more.up.sql": {Data: []byte(`SELECT 1`)}}
	if err := MigrateSchema(ctx, db, edited, "m", "other_sim", 42); err == nil || !strings.Contains(err.Error(), "0002_more was changed") {
		t.Fatalf("an edited migration: %v", err)
	}
	older := fstest.MapFS{"m/0001_init.up.sql": files["m/0001_init.up.sql"]}
	if err := MigrateSchema(ctx, db, older, "m", "other_sim", 42); err == nil || !strings.Contains(err.Error(), "0002_more, unknown to this program") {
		t.Fatalf("a program older than its schema: %v", err)
	}
}
