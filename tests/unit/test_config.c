/*
 * test_config.c - configuration loading and directive validation.
 *
 * Configuration files are written to a temporary directory and loaded
 * with gh_config_load.  The module registry is stubbed here: a fake
 * module whose directive table covers every type, a second built-in one,
 * one that only "exists as a .so" and one whose .so is broken.
 */
#include "config.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"
#include "t.h"

/* As config.c: the build passes the installed location. */
#ifndef GH_PLUGIN_DIR
#define GH_PLUGIN_DIR "/usr/local/lib/gatehouse/plugins"
#endif

/* ------------------------------------------------------------------ */
/* Registry stubs.                                                     */

struct fake_conf {
	int enabled;
	long long limit;
	const char *greeting;
	struct gh_strlist hosts;
	int level;
	const char *nothing;
	struct gh_strlist empty;
	long long zero;
};

static const char *const level_choices[] = { "low", "mid", "high", NULL };

static const struct gh_directive fake_directives[] = {
	{ .name = "enabled", .type = GH_DT_BOOL,
	  .offset = offsetof(struct fake_conf, enabled), .def = "true",
	  .doc = "turn it on" },
	{ .name = "limit", .type = GH_DT_INT,
	  .offset = offsetof(struct fake_conf, limit), .def = "10",
	  .min = 1, .max = 100, .doc = "how many" },
	{ .name = "greeting", .type = GH_DT_STRING,
	  .offset = offsetof(struct fake_conf, greeting), .def = "\"hello\"",
	  .doc = "what to say" },
	{ .name = "hosts", .type = GH_DT_STRLIST,
	  .offset = offsetof(struct fake_conf, hosts),
	  .def = "[ \"a\", \"b\" ]", .max = 3, .doc = "some hosts" },
	{ .name = "level", .type = GH_DT_ENUM,
	  .offset = offsetof(struct fake_conf, level), .def = "\"mid\"",
	  .choices = level_choices, .doc = "how loud" },
	{ .name = "nothing", .type = GH_DT_STRING,
	  .offset = offsetof(struct fake_conf, nothing), .def = NULL,
	  .doc = "unset by default" },
	{ .name = "empty", .type = GH_DT_STRLIST,
	  .offset = offsetof(struct fake_conf, empty), .def = "[]",
	  .doc = "empty by default" },
	{ .name = "zero", .type = GH_DT_INT,
	  .offset = offsetof(struct fake_conf, zero), .def = NULL,
	  .min = -5, .max = 5, .doc = "zero by default" },
	{ .name = NULL },
};

static const struct gh_hook_entry no_hooks[] = { { 0, NULL } };
static const struct gh_directive no_directives[] = { { .name = NULL } };

static const struct gh_module fake_module = {
	.abi = GH_ABI_VERSION, .name = "fake", .description = "fake",
	.directives = fake_directives, .conf_size = sizeof(struct fake_conf),
	.hooks = no_hooks,
};

static const struct gh_module other_module = {
	.abi = GH_ABI_VERSION, .name = "other", .description = "other",
	.directives = no_directives, .conf_size = 0, .hooks = no_hooks,
};

/* Stands for a plugin found as plugin_dir/sofake.so. */
static const struct gh_module sofake_module = {
	.abi = GH_ABI_VERSION, .name = "sofake", .description = "so",
	.directives = no_directives, .conf_size = 0, .hooks = no_hooks,
};

/* A module that (wrongly) declares a common directive itself. */
static const struct gh_directive clash_directives[] = {
	{ .name = "timeout", .type = GH_DT_INT, .offset = 0, .def = "1",
	  .min = 0, .max = 10, .doc = "clash" },
	{ .name = NULL },
};

static const struct gh_module clash_module = {
	.abi = GH_ABI_VERSION, .name = "clash", .description = "clash",
	.directives = clash_directives, .conf_size = sizeof(long long),
	.hooks = no_hooks,
};

const struct gh_module *const gh_builtin_modules[] = {
	&fake_module, &other_module, &clash_module, NULL
};

static char last_plugin_dir[256];

const struct gh_module *
gh_module_find(const char *name, const char *plugin_dir, char *err,
    size_t errlen)
{
	const struct gh_module *const *m;

	snprintf(last_plugin_dir, sizeof(last_plugin_dir), "%s", plugin_dir);
	for (m = gh_builtin_modules; *m != NULL; m++)
		if (strcmp((*m)->name, name) == 0)
			return *m;
	if (strcmp(name, "sofake") == 0)
		return &sofake_module;
	if (strcmp(name, "broken") == 0)
		snprintf(err, errlen, "broken.so: ABI version 2, want 1");
	return NULL;
}

/* ------------------------------------------------------------------ */
/* A host section.                                                     */

struct relayd_conf {
	long long workers;
	const char *hostname;
	int verbose;
};

static const struct gh_directive relayd_directives[] = {
	{ .name = "workers", .type = GH_DT_INT,
	  .offset = offsetof(struct relayd_conf, workers), .def = "4",
	  .min = 0, .max = 256, .doc = "worker processes" },
	{ .name = "hostname", .type = GH_DT_STRING,
	  .offset = offsetof(struct relayd_conf, hostname), .def = NULL,
	  .doc = "our name" },
	{ .name = "verbose", .type = GH_DT_BOOL,
	  .offset = offsetof(struct relayd_conf, verbose), .def = "false",
	  .doc = "chatty" },
	{ .name = NULL },
};

static struct relayd_conf relayd;
static struct gh_section sections[] = {
	{ "relayd", relayd_directives, &relayd },
	{ NULL, NULL, NULL },
};
static const char *const ignore[] = { "milterd", NULL };

/* ------------------------------------------------------------------ */
/* Helpers.                                                            */

static char tmpdir[64];
static char conf_path[128];
static char errbuf[1024];

static const char *
write_file(const char *name, const char *text)
{
	static char path[128];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	if ((fp = fopen(path, "w")) == NULL) {
		perror(path);
		exit(2);
	}
	fputs(text, fp);
	fclose(fp);
	return path;
}

/* Write text to t.conf and load it. */
static struct gh_config *
load(const char *text)
{
	write_file("t.conf", text);
	memset(&relayd, 0xa5, sizeof(relayd));	/* catch missing defaults */
	errbuf[0] = '\0';
	return gh_config_load(conf_path, sections, ignore, errbuf,
	    sizeof(errbuf));
}

/* Loading text must fail with "<path>suffix". */
static void
expect_error(const char *text, const char *suffix)
{
	struct gh_config *cfg;
	char want[1024];

	snprintf(want, sizeof(want), "%s%s", conf_path, suffix);
	cfg = load(text);
	T_CHECK(cfg == NULL);
	T_EQ_STR(errbuf, want);
	gh_config_free(cfg);
}

static struct fake_conf *
fake_conf(struct gh_config *cfg, const char *name)
{
	size_t i;

	for (i = 0; i < cfg->nplugins; i++)
		if (strcmp(cfg->plugins[i].name, name) == 0)
			return cfg->plugins[i].conf;
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Tests.                                                              */

static void
test_empty_file_defaults(void)
{
	struct gh_config *cfg = load("# nothing here\n");

	T_CHECK(cfg != NULL);
	if (cfg == NULL)
		return;
	T_EQ_STR(errbuf, "");
	T_EQ_INT(cfg->nplugins, 0);
	T_EQ_STR(cfg->plugin_dir, GH_PLUGIN_DIR);
	T_EQ_STR(cfg->path, conf_path);
	T_EQ_INT(relayd.workers, 4);
	T_CHECK(relayd.hostname == NULL);
	T_EQ_INT(relayd.verbose, 0);
	gh_config_free(cfg);
}

static void
test_plugin_defaults(void)
{
	struct gh_config *cfg = load("plugins = [ \"fake\" ];\n");
	struct fake_conf *fc;

	T_CHECK(cfg != NULL);
	if (cfg == NULL)
		return;
	T_EQ_INT(cfg->nplugins, 1);
	T_CHECK(cfg->plugins[0].mod == &fake_module);
	T_EQ_STR(cfg->plugins[0].name, "fake");
	fc = cfg->plugins[0].conf;
	T_EQ_INT(fc->enabled, 1);
	T_EQ_INT(fc->limit, 10);
	T_EQ_STR(fc->greeting, "hello");
	T_EQ_INT(fc->hosts.n, 2);
	T_EQ_STR(fc->hosts.v[0], "a");
	T_EQ_STR(fc->hosts.v[1], "b");
	T_CHECK(fc->hosts.v[2] == NULL);
	T_EQ_INT(fc->level, 1);
	T_CHECK(fc->nothing == NULL);
	T_EQ_INT(fc->empty.n, 0);
	T_CHECK(fc->empty.v != NULL && fc->empty.v[0] == NULL);
	T_EQ_INT(fc->zero, 0);
	T_EQ_INT(cfg->plugins[0].shadow, 0);
	T_EQ_INT(cfg->plugins[0].timeout, 30);
	gh_config_free(cfg);
}

static void
test_all_types_accepted(void)
{
	struct gh_config *cfg;
	struct fake_conf *fc;

	cfg = load("plugins = [ \"fake\" ];\n"
	    "fake = {\n"
	    "  enabled = false;\n"
	    "  limit = 100;\n"
	    "  greeting = \"hi there\";\n"
	    "  hosts = [ \"x\", \"y\", \"z\" ];\n"
	    "  level = \"high\";\n"
	    "  nothing = \"\";\n"
	    "  empty = [ \"e\" ];\n"
	    "  zero = -5;\n"
	    "};\n"
	    "relayd = { workers = 0; hostname = \"mx.example\"; "
	    "verbose = true; };\n");
	T_CHECK(cfg != NULL);
	if (cfg == NULL) {
		fprintf(stderr, "  %s\n", errbuf);
		return;
	}
	fc = fake_conf(cfg, "fake");
	T_EQ_INT(fc->enabled, 0);
	T_EQ_INT(fc->limit, 100);
	T_EQ_STR(fc->greeting, "hi there");
	T_EQ_INT(fc->hosts.n, 3);
	T_EQ_STR(fc->hosts.v[2], "z");
	T_EQ_INT(fc->level, 2);
	T_EQ_STR(fc->nothing, "");
	T_EQ_INT(fc->empty.n, 1);
	T_EQ_STR(fc->empty.v[0], "e");
	T_EQ_INT(fc->zero, -5);
	T_EQ_INT(relayd.workers, 0);
	T_EQ_STR(relayd.hostname, "mx.example");
	T_EQ_INT(relayd.verbose, 1);
	gh_config_free(cfg);
}

static void
test_int64_accepted(void)
{
	struct gh_config *cfg;

	cfg = load("plugins = [ \"fake\" ];\nfake = { limit = 42L; };\n");
	T_CHECK(cfg != NULL);
	if (cfg == NULL)
		return;
	T_EQ_INT(fake_conf(cfg, "fake")->limit, 42);
	gh_config_free(cfg);
}

static void
test_strlist_forms(void)
{
	struct gh_config *cfg;
	struct fake_conf *fc;

	/* A single string is a list of one; a libconfig list ( ) works
	 * like an array; `plugins` itself may be a single string. */
	cfg = load("plugins = \"fake\";\n"
	    "fake = { hosts = \"only\"; empty = ( \"p\", \"q\" ); };\n");
	T_CHECK(cfg != NULL);
	if (cfg == NULL)
		return;
	fc = fake_conf(cfg, "fake");
	T_EQ_INT(fc->hosts.n, 1);
	T_EQ_STR(fc->hosts.v[0], "only");
	T_CHECK(fc->hosts.v[1] == NULL);
	T_EQ_INT(fc->empty.n, 2);
	T_EQ_STR(fc->empty.v[1], "q");
	gh_config_free(cfg);
}

static void
test_enum_case_insensitive(void)
{
	struct gh_config *cfg;

	cfg = load("plugins = [ \"fake\" ];\n"
	    "fake = { level = \"LoW\"; mode = \"SHADOW\"; };\n");
	T_CHECK(cfg != NULL);
	if (cfg == NULL)
		return;
	T_EQ_INT(fake_conf(cfg, "fake")->level, 0);
	T_EQ_INT(cfg->plugins[0].shadow, 1);
	gh_config_free(cfg);
}

static void
test_common_directives(void)
{
	struct gh_config *cfg;

	cfg = load("plugins = [ \"fake\", \"other\", \"sofake\" ];\n"
	    "fake = { mode = \"shadow\"; timeout = 0; limit = 7; };\n"
	    "other = { timeout = 3600; mode = \"enforce\"; };\n");
	T_CHECK(cfg != NULL);
	if (cfg == NULL) {
		fprintf(stderr, "  %s\n", errbuf);
		return;
	}
	T_EQ_INT(cfg->nplugins, 3);
	T_EQ_STR(cfg->plugins[0].name, "fake");
	T_EQ_INT(cfg->plugins[0].shadow, 1);
	T_EQ_INT(cfg->plugins[0].timeout, 0);
	T_EQ_INT(fake_conf(cfg, "fake")->limit, 7);
	T_EQ_STR(cfg->plugins[1].name, "other");
	T_EQ_INT(cfg->plugins[1].shadow, 0);
	T_EQ_INT(cfg->plugins[1].timeout, 3600);
	T_EQ_STR(cfg->plugins[2].name, "sofake");
	T_CHECK(cfg->plugins[2].mod == &sofake_module);
	T_EQ_INT(cfg->plugins[2].timeout, 30);
	T_CHECK(cfg->plugins[2].conf != NULL);
	gh_config_free(cfg);
}

static void
test_plugin_dir(void)
{
	struct gh_config *cfg;

	/* plugin_dir after plugins still applies to the lookups. */
	cfg = load("plugins = [ \"sofake\" ];\n"
	    "plugin_dir = \"/opt/gh/plugins\";\n");
	T_CHECK(cfg != NULL);
	if (cfg == NULL)
		return;
	T_EQ_STR(cfg->plugin_dir, "/opt/gh/plugins");
	T_EQ_STR(last_plugin_dir, "/opt/gh/plugins");
	gh_config_free(cfg);
}

static void
test_ignore_list(void)
{
	struct gh_config *cfg;

	cfg = load("milterd = { whatever = 1; nested = { x = \"y\"; }; };\n"
	    "relayd = { workers = 2; };\n");
	T_CHECK(cfg != NULL);
	if (cfg == NULL) {
		fprintf(stderr, "  %s\n", errbuf);
		return;
	}
	T_EQ_INT(relayd.workers, 2);
	gh_config_free(cfg);

	/* Without the ignore list the same group is an error. */
	write_file("t.conf", "milterd = { whatever = 1; };\n");
	cfg = gh_config_load(conf_path, sections, NULL, errbuf,
	    sizeof(errbuf));
	T_CHECK(cfg == NULL);
	T_CHECK(strstr(errbuf, ":1: unknown setting \"milterd\" (not a "
	    "plugin name or a section)") != NULL);
	gh_config_free(cfg);
}

static void
test_unlisted_builtin_valid(void)
{
	struct gh_config *cfg;

	/* A known module's group without the module in plugins: checked,
	 * but no plugin comes of it. */
	cfg = load("plugins = [];\n"
	    "fake = { limit = 5; mode = \"shadow\"; };\n");
	T_CHECK(cfg != NULL);
	if (cfg == NULL)
		return;
	T_EQ_INT(cfg->nplugins, 0);
	gh_config_free(cfg);
}

static void
test_missing_file(void)
{
	struct gh_config *cfg;
	char path[256], want[512];

	snprintf(path, sizeof(path), "%s/does-not-exist.conf", tmpdir);
	snprintf(want, sizeof(want), "%s: No such file or directory", path);
	cfg = gh_config_load(path, sections, ignore, errbuf, sizeof(errbuf));
	T_CHECK(cfg == NULL);
	T_EQ_STR(errbuf, want);
}

static void
test_include_relative(void)
{
	struct gh_config *cfg;
	char want[512];

	/* @include is resolved against the file's directory, and an error
	 * in the included file names that file. */
	write_file("inc.conf", "fake = {\n  limit = 9;\n};\n");
	cfg = load("plugins = [ \"fake\" ];\n@include \"inc.conf\"\n");
	T_CHECK(cfg != NULL);
	if (cfg == NULL) {
		fprintf(stderr, "  %s\n", errbuf);
		return;
	}
	T_EQ_INT(fake_conf(cfg, "fake")->limit, 9);
	gh_config_free(cfg);

	write_file("inc.conf", "fake = {\n  limit = 0;\n};\n");
	cfg = load("plugins = [ \"fake\" ];\n@include \"inc.conf\"\n");
	T_CHECK(cfg == NULL);
	snprintf(want, sizeof(want),
	    "%s/inc.conf:2: fake.limit: value 0 is out of range 1..100",
	    tmpdir);
	T_EQ_STR(errbuf, want);
	gh_config_free(cfg);

	write_file("inc.conf", "\nfake = {\n  limit = ;\n};\n");
	cfg = load("plugins = [ \"fake\" ];\n@include \"inc.conf\"\n");
	T_CHECK(cfg == NULL);
	snprintf(want, sizeof(want), "%s/inc.conf:3: syntax error", tmpdir);
	T_EQ_STR(errbuf, want);
	gh_config_free(cfg);
}

static void
test_first_error_in_file_order(void)
{
	expect_error("plugins = [ \"fake\" ];\n"
	    "relayd = { bogus = 1; };\n"
	    "fake = { limit = 0; };\n",
	    ":2: relayd: unknown setting \"bogus\"");
}

static void
test_module_redeclares_common(void)
{
	struct gh_config *cfg = load("plugins = [ \"clash\" ];\n");

	T_CHECK(cfg == NULL);
	T_EQ_STR(errbuf,
	    "internal: module clash declares common directive timeout");
}

/* gh_directives_apply on its own, with settings parsed from memory. */
static void
test_apply_direct(void)
{
	struct gh_pool *pool = gh_pool_create();
	struct fake_conf fc;
	config_t cf;
	char err[256];
	int rc;

	config_init(&cf);
	T_CHECK(config_read_string(&cf, "g = {\n limit = 3;\n"
	    " zero = 6; };\n") == CONFIG_TRUE);
	memset(&fc, 0, sizeof(fc));
	rc = gh_directives_apply(fake_directives, &fc,
	    config_lookup(&cf, "g"), pool, "mem.conf", err, sizeof(err));
	T_EQ_INT(rc, -1);
	T_EQ_STR(err, "mem.conf:3: g.zero: value 6 is out of range -5..5");

	/* A NULL group gives the defaults. */
	memset(&fc, 0, sizeof(fc));
	rc = gh_directives_apply(fake_directives, &fc, NULL, pool, "mem.conf",
	    err, sizeof(err));
	T_EQ_INT(rc, 0);
	T_EQ_INT(fc.limit, 10);
	T_EQ_STR(fc.greeting, "hello");
	config_destroy(&cf);
	/* Values live in the pool, not in libconfig's memory. */
	T_EQ_STR(fc.hosts.v[1], "b");
	gh_pool_destroy(pool);
}

struct list_conf {
	struct gh_strlist two, none, one, null;
	const char *s;
	int b;
};

static void
test_default_parsing(void)
{
	static const struct gh_directive dirs[] = {
		{ .name = "two", .type = GH_DT_STRLIST,
		  .offset = offsetof(struct list_conf, two),
		  .def = "[ \"a b\", \"c\\\"d\" ]" },
		{ .name = "none", .type = GH_DT_STRLIST,
		  .offset = offsetof(struct list_conf, none), .def = "[]" },
		{ .name = "one", .type = GH_DT_STRLIST,
		  .offset = offsetof(struct list_conf, one),
		  .def = "( \"x\" )" },
		{ .name = "null", .type = GH_DT_STRLIST,
		  .offset = offsetof(struct list_conf, null), .def = NULL },
		{ .name = "s", .type = GH_DT_STRING,
		  .offset = offsetof(struct list_conf, s), .def = "\"t\"" },
		{ .name = "b", .type = GH_DT_BOOL,
		  .offset = offsetof(struct list_conf, b), .def = "true" },
		{ .name = NULL },
	};
	struct gh_pool *pool = gh_pool_create();
	struct list_conf lc;
	char err[256] = "";

	memset(&lc, 0xa5, sizeof(lc));
	T_EQ_INT(gh_directives_apply(dirs, &lc, NULL, pool, "x", err,
	    sizeof(err)), 0);
	T_EQ_STR(err, "");
	T_EQ_INT(lc.two.n, 2);
	T_EQ_STR(lc.two.v[0], "a b");
	T_EQ_STR(lc.two.v[1], "c\"d");
	T_EQ_INT(lc.none.n, 0);
	T_EQ_INT(lc.one.n, 1);
	T_EQ_STR(lc.one.v[0], "x");
	T_EQ_INT(lc.null.n, 0);
	T_CHECK(lc.null.v != NULL);
	T_EQ_STR(lc.s, "t");
	T_EQ_INT(lc.b, 1);
	gh_pool_destroy(pool);
}

static void
test_bad_defaults(void)
{
	static const struct gh_directive syntax[] = {
		{ .name = "broken", .type = GH_DT_STRLIST, .def = "[ \"a\"" },
		{ .name = NULL },
	};
	static const struct gh_directive type[] = {
		{ .name = "num", .type = GH_DT_INT, .def = "\"ten\"",
		  .max = 10 },
		{ .name = NULL },
	};
	static const struct gh_directive range[] = {
		{ .name = "small", .type = GH_DT_INT, .def = "11", .max = 10 },
		{ .name = NULL },
	};
	static const struct gh_directive extra[] = {
		{ .name = "two", .type = GH_DT_INT, .def = "1; w = 2",
		  .max = 10 },
		{ .name = NULL },
	};
	struct gh_pool *pool = gh_pool_create();
	long long buf[4];
	char err[256];

	T_EQ_INT(gh_directives_apply(syntax, buf, NULL, pool, "x", err,
	    sizeof(err)), -1);
	T_EQ_STR(err, "internal: bad default for broken");
	T_EQ_INT(gh_directives_apply(type, buf, NULL, pool, "x", err,
	    sizeof(err)), -1);
	T_EQ_STR(err, "internal: bad default for num");
	T_EQ_INT(gh_directives_apply(range, buf, NULL, pool, "x", err,
	    sizeof(err)), -1);
	T_EQ_STR(err, "internal: bad default for small");
	T_EQ_INT(gh_directives_apply(extra, buf, NULL, pool, "x", err,
	    sizeof(err)), -1);
	T_EQ_STR(err, "internal: bad default for two");
	gh_pool_destroy(pool);
}

static void
test_print_common(void)
{
	char *out = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&out, &len);

	gh_directives_print(fp, gh_plugin_common_directives);
	fclose(fp);
	T_EQ_STR(out,
	    "  mode = \"enforce\";   (one of \"enforce\", \"shadow\")\n"
	    "      shadow logs and counts rejecting verdicts but acts as "
	    "CONT\n"
	    "  timeout = 30;   (integer, 0..3600)\n"
	    "      deadline in seconds for a pending hook (0: none); on "
	    "expiry the hook counts as DENYSOFT\n");
	free(out);
}

static void
test_print_null_defaults(void)
{
	char *out = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&out, &len);

	gh_directives_print(fp, fake_directives + 3);
	fclose(fp);
	T_EQ_STR(out,
	    "  hosts = [ \"a\", \"b\" ];   (list of strings, at most 3)\n"
	    "      some hosts\n"
	    "  level = \"mid\";   (one of \"low\", \"mid\", \"high\")\n"
	    "      how loud\n"
	    "  nothing = \"\";   (string)\n"
	    "      unset by default\n"
	    "  empty = [];   (list of strings)\n"
	    "      empty by default\n"
	    "  zero = 0;   (integer, -5..5)\n"
	    "      zero by default\n");
	free(out);
}

/* One row per error: the configuration and the message after the path. */
static const struct {
	const char *label, *conf, *want;
} error_rows[] = {
	{ "unknown key in plugin group",
	  "plugins = [ \"fake\" ];\nfake = {\n  limit = 5;\n  foo = 1;\n};\n",
	  ":4: fake: unknown setting \"foo\"" },
	{ "unknown key in section",
	  "relayd = {\n  wrokers = 5;\n};\n",
	  ":2: relayd: unknown setting \"wrokers\"" },
	{ "int given a string",
	  "plugins = [ \"fake\" ];\nfake = { limit = \"5\"; };\n",
	  ":2: fake.limit: expected an integer" },
	{ "int given a float",
	  "relayd = {\n\n  workers = 2.5;\n};\n",
	  ":3: relayd.workers: expected an integer" },
	{ "bool given an int",
	  "plugins = [ \"fake\" ];\nfake = { enabled = 1; };\n",
	  ":2: fake.enabled: expected true or false" },
	{ "bool given a string",
	  "relayd = { verbose = \"yes\"; };\n",
	  ":1: relayd.verbose: expected true or false" },
	{ "string given an int",
	  "plugins = [ \"fake\" ];\nfake = { greeting = 5; };\n",
	  ":2: fake.greeting: expected a string" },
	{ "string given a list",
	  "relayd = { hostname = [ \"a\" ]; };\n",
	  ":1: relayd.hostname: expected a string" },
	{ "strlist given an int",
	  "plugins = [ \"fake\" ];\nfake = { hosts = 5; };\n",
	  ":2: fake.hosts: expected a string or a list of strings" },
	{ "strlist element not a string",
	  "plugins = [ \"fake\" ];\nfake = {\n  hosts = ( \"a\",\n"
	  "    5 );\n};\n",
	  ":4: fake.hosts: expected a list of strings" },
	{ "strlist given a group",
	  "plugins = [ \"fake\" ];\nfake = { hosts = { a = 1; }; };\n",
	  ":2: fake.hosts: expected a string or a list of strings" },
	{ "enum given an int",
	  "plugins = [ \"fake\" ];\nfake = { level = 2; };\n",
	  ":2: fake.level: expected one of \"low\", \"mid\", \"high\"" },
	{ "enum not among choices",
	  "plugins = [ \"fake\" ];\nfake = { level = \"loud\"; };\n",
	  ":2: fake.level: expected one of \"low\", \"mid\", \"high\"" },
	{ "int below range",
	  "plugins = [ \"fake\" ];\nfake = { limit = 0; };\n",
	  ":2: fake.limit: value 0 is out of range 1..100" },
	{ "int above range",
	  "relayd = {\n  workers = 99999;\n};\n",
	  ":2: relayd.workers: value 99999 is out of range 0..256" },
	{ "int64 above range",
	  "relayd = { workers = 9999999999L; };\n",
	  ":1: relayd.workers: value 9999999999 is out of range 0..256" },
	{ "list too long",
	  "plugins = [ \"fake\" ];\n\nfake = { hosts = [ \"a\", \"b\", \"c\","
	  " \"d\" ]; };\n",
	  ":3: fake.hosts: too many values (4, at most 3)" },
	{ "mode not among choices",
	  "plugins = [ \"fake\" ];\nfake = { mode = \"log\"; };\n",
	  ":2: fake.mode: expected one of \"enforce\", \"shadow\"" },
	{ "timeout negative",
	  "plugins = [ \"other\" ];\nother = { timeout = -1; };\n",
	  ":2: other.timeout: value -1 is out of range 0..3600" },
	{ "timeout too large",
	  "plugins = [ \"sofake\" ];\nsofake = { timeout = 3601; };\n",
	  ":2: sofake.timeout: value 3601 is out of range 0..3600" },
	{ "common key on a section",
	  "relayd = { mode = \"shadow\"; };\n",
	  ":1: relayd: unknown setting \"mode\"" },
	{ "unknown plugin",
	  "plugins = [\n  \"fake\",\n  \"nosuch\",\n  \"other\"\n];\n",
	  ":3: plugins: unknown plugin \"nosuch\"" },
	{ "broken plugin",
	  "plugins = [ \"broken\" ];\n",
	  ":1: plugins: unknown plugin \"broken\": broken.so: ABI version 2,"
	  " want 1" },
	{ "duplicate plugin",
	  "plugins = [ \"fake\",\n  \"other\",\n  \"fake\" ];\n",
	  ":3: plugins: duplicate plugin \"fake\"" },
	{ "plugin named like a section",
	  "plugins = [ \"relayd\" ];\n",
	  ":1: plugins: \"relayd\" is a reserved name" },
	{ "plugin named like an ignored group",
	  "plugins = [ \"milterd\" ];\n",
	  ":1: plugins: \"milterd\" is a reserved name" },
	{ "plugin name with a slash",
	  "plugins = [ \"../evil\" ];\n",
	  ":1: plugins: invalid plugin name \"../evil\"" },
	{ "plugins not strings",
	  "plugins = [ 1, 2 ];\n",
	  ":1: plugins: expected a list of strings" },
	{ "plugins a group",
	  "plugins = { fake = 1; };\n",
	  ":1: plugins: expected a string or a list of strings" },
	{ "plugin_dir not a string",
	  "plugin_dir = 5;\n",
	  ":1: plugin_dir: expected a non-empty string" },
	{ "plugin_dir empty",
	  "\nplugin_dir = \"\";\n",
	  ":2: plugin_dir: expected a non-empty string" },
	{ "unknown top-level group",
	  "relayd = { };\n\nspamassasin = {\n  x = 1;\n};\n",
	  ":3: unknown setting \"spamassasin\" (not a plugin name or a "
	  "section)" },
	{ "unknown top-level scalar",
	  "plugins = [];\nworkers = 5;\n",
	  ":2: unknown setting \"workers\"" },
	{ "section not a group",
	  "relayd = 5;\n",
	  ":1: relayd: expected a group" },
	{ "plugin group not a group",
	  "plugins = [ \"fake\" ];\nfake = [ \"x\" ];\n",
	  ":2: fake: expected a group" },
	{ "unlisted builtin with a typo",
	  "plugins = [ \"other\" ];\nfake = {\n  limt = 5;\n};\n",
	  ":3: fake: unknown setting \"limt\"" },
	{ "unlisted builtin out of range",
	  "fake = { timeout = 99999; };\n",
	  ":1: fake.timeout: value 99999 is out of range 0..3600" },
	{ "syntax error",
	  "relayd = {\n  workers = 5;\n  verbose = = true;\n};\n",
	  ":3: syntax error" },
	{ "duplicate setting",
	  "relayd = { workers = 1; };\nrelayd = { workers = 2; };\n",
	  ":2: duplicate setting name" },
};

static void
test_error_table(void)
{
	size_t i;

	for (i = 0; i < sizeof(error_rows) / sizeof(error_rows[0]); i++) {
		T_BEGIN();
		expect_error(error_rows[i].conf, error_rows[i].want);
		T_END(error_rows[i].label);
	}
}

int
main(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_config.XXXXXX");
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 2;
	}
	snprintf(conf_path, sizeof(conf_path), "%s/t.conf", tmpdir);

	T_RUN(test_empty_file_defaults);
	T_RUN(test_plugin_defaults);
	T_RUN(test_all_types_accepted);
	T_RUN(test_int64_accepted);
	T_RUN(test_strlist_forms);
	T_RUN(test_enum_case_insensitive);
	T_RUN(test_common_directives);
	T_RUN(test_plugin_dir);
	T_RUN(test_ignore_list);
	T_RUN(test_unlisted_builtin_valid);
	T_RUN(test_missing_file);
	T_RUN(test_include_relative);
	T_RUN(test_first_error_in_file_order);
	T_RUN(test_module_redeclares_common);
	T_RUN(test_apply_direct);
	T_RUN(test_default_parsing);
	T_RUN(test_bad_defaults);
	T_RUN(test_print_common);
	T_RUN(test_print_null_defaults);
	test_error_table();

	unlink(conf_path);
	snprintf(conf_path, sizeof(conf_path), "%s/inc.conf", tmpdir);
	unlink(conf_path);
	rmdir(tmpdir);
	return t_done("test_config");
}
