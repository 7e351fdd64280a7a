/*
 * registry.c - finding modules: built in, or shared objects.
 *
 * Built-in modules are listed in filters/modules.c, which the build
 * generates from the plugin list in Makefile.am.  A third-party plugin is
 * PLUGIN_DIR/NAME.so exporting `const struct gh_module gh_module`, or
 * gh_module_NAME, the built-in name, so that one source file (such as
 * the one `relayd -p NAME` writes) builds either way unchanged.  Its ABI
 * version is checked before anything else is read from it, as Redis does
 * for its modules.
 */
#include "config.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core.h"

static const struct gh_module *
builtin_find(const char *name)
{
	size_t i;

	for (i = 0; gh_builtin_modules[i] != NULL; i++)
		if (strcmp(gh_builtin_modules[i]->name, name) == 0)
			return gh_builtin_modules[i];
	return NULL;
}

static int
name_is_safe(const char *name)
{
	/* A plugin name becomes a file name: no path tricks. */
	if (name[0] == '\0' || strlen(name) > 64)
		return 0;
	for (; *name != '\0'; name++)
		if (!(*name == '_' || *name == '-' ||
		      (*name >= 'a' && *name <= 'z') ||
		      (*name >= 'A' && *name <= 'Z') ||
		      (*name >= '0' && *name <= '9')))
			return 0;
	return 1;
}

static const struct gh_module *
shared_find(const char *name, const char *dir, char *err, size_t errlen)
{
	char path[PATH_MAX], sym[128];
	const struct gh_module *mod;
	void *h;

	if (dir == NULL || !name_is_safe(name))
		return NULL;
	snprintf(path, sizeof(path), "%s/%s.so", dir, name);
	if (access(path, F_OK) != 0)
		return NULL;
	/* Modules stay loaded for the life of the process: their code is
	 * referenced from every chain. */
	h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		snprintf(err, errlen, "%s", dlerror());
		return NULL;
	}
	snprintf(sym, sizeof(sym), "gh_module_%s", name);
	if ((mod = dlsym(h, "gh_module")) == NULL)
		mod = dlsym(h, sym);
	if (mod == NULL) {
		snprintf(err, errlen, "%s: exports neither gh_module nor %s",
			 path, sym);
		dlclose(h);
		return NULL;
	}
	if (mod->abi != GH_ABI_VERSION) {
		snprintf(err, errlen, "%s: ABI version %u, expected %u", path,
			 mod->abi, GH_ABI_VERSION);
		dlclose(h);
		return NULL;
	}
	if (mod->name == NULL || strcmp(mod->name, name) != 0) {
		snprintf(err, errlen, "%s: module calls itself \"%s\"", path,
			 mod->name ? mod->name : "");
		dlclose(h);
		return NULL;
	}
	return mod;
}

const struct gh_module *
gh_module_find(const char *name, const char *plugin_dir, char *err,
	       size_t errlen)
{
	const struct gh_module *mod = builtin_find(name);

	if (errlen > 0)
		err[0] = '\0';
	if (mod != NULL)
		return mod;
	return shared_find(name, plugin_dir, err, errlen);
}

void
gh_module_print_list(FILE *fp)
{
	size_t i;

	/* At least two spaces after the name, however long: scripts
	 * split on them. */
	for (i = 0; gh_builtin_modules[i] != NULL; i++)
		fprintf(fp, "%-18s  %s\n", gh_builtin_modules[i]->name,
			gh_builtin_modules[i]->description);
}

/* `-h NAME` for both hosts: a plugin is looked for in the plugin_dir of
 * the file given with -c (conf, or NULL: the compiled-in directory). */
int
gh_module_help_command(const char *prog, const char *name, const char *conf)
{
	char dir[PATH_MAX], err[1024];

	snprintf(dir, sizeof(dir), "%s", GH_PLUGIN_DIR);
	if (conf != NULL && gh_config_plugin_dir(conf, dir, sizeof(dir), err,
	    sizeof(err)) != 0) {
		fprintf(stderr, "%s: %s\n", prog, err);
		return 2;
	}
	if (gh_module_print_help(stdout, name, dir) != 0) {
		fprintf(stderr, "%s: no plugin called \"%s\" (%s -l lists "
			"them; %s.so is looked for in %s)\n", prog, name, prog,
			name, dir);
		return 2;
	}
	return 0;
}

int
gh_module_print_help(FILE *fp, const char *name, const char *plugin_dir)
{
	char err[256];
	const struct gh_module *mod = gh_module_find(name, plugin_dir, err,
						     sizeof(err));

	if (mod == NULL)
		return -1;
	fprintf(fp, "%s - %s\n\n", mod->name, mod->description);
	if (mod->doc != NULL)
		fprintf(fp, "%s\n", mod->doc);
	fprintf(fp, "DIRECTIVES (group \"%s\" in the configuration file)\n\n",
		mod->name);
	if (mod->directives != NULL)
		gh_directives_print(fp, mod->directives);
	gh_directives_print(fp, gh_plugin_common_directives);
	return 0;
}
