/* Every EndpointPickerConfig copied from llm-d's repositories (tests/data/epp-configs/,
 * each file naming its source and commit on its first line) loaded unchanged. The table
 * below says, per file, whether it loads today or which missing piece stops it: the test
 * fails when a loading config breaks AND when a blocked one starts loading (then move it
 * to the loading side), so the table is always the exact list of what is left to build.
 * A file in the directory but not in the table fails the test too. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "base/err.h"
#include "sched/sched_internal.h"
#include "test_sched_util.h"

#define DIR_ "tests/data/epp-configs/llm-d-inference-scheduler/"

static const struct {
    const char *file;
    const char *blocked_by; /* NULL: loads; else a substring of the load error */
} configs[] = {
    {"config-charts-epplib-templates-_config-default.yaml", NULL},
    {"deploy-config-dp-epp-config.yaml", "unknown plugin type 'data-parallel-profile-handler'"},
    {"deploy-config-epp-config.yaml", NULL},
    {"deploy-config-epp-estimate-prefix-cache-config.yaml", NULL},
    {"deploy-config-epp-precise-prefix-cache-config.yaml", "unknown plugin type 'token-producer'"},
    {"deploy-config-pd-epp-config.yaml", NULL},
    {"deploy-config-probabilistic-admitter-epp-config.yaml",
     "unknown plugin type 'probabilistic-admitter'"},
    {"deploy-config-sim-e-p-d-epp-config.yaml", "unknown plugin type 'encode-filter'"},
    {"deploy-config-sim-e-pd-epp-config.yaml", "unknown plugin type 'encode-filter'"},
    {"deploy-config-sim-epp-config.yaml", NULL},
    {"deploy-config-sim-epp-kvcache-config.yaml", "unknown plugin type 'token-producer'"},
    {"deploy-config-sim-epp-no-hit-lru.yaml",
     "unknown plugin type 'precise-prefix-cache-scorer'"},
    {"deploy-config-sim-epp-tokenizer-vllm-http-config.yaml",
     "unknown plugin type 'token-producer'"},
    {"deploy-config-sim-pd-epp-config.yaml", NULL},
    {"test-integration-epp-testdata-datalayer-config.yaml",
     "unknown plugin type 'mock-metrics-source'"},
    {"test-integration-epp-testdata-default-config.yaml", NULL},
    {"test-integration-epp-testdata-request-attribute-reporter-config.yaml",
     "unknown plugin type 'request-attribute-reporter'"},
    /* the Go loader's own fixture with made-up test-* plugin types: never loads anywhere */
    {"test-testdata-configloader_1_test.yaml", "unknown plugin type 'test-one'"},
    {"test-testdata-inferencepool-e2e-default-plugins.yaml", NULL},
    {"test-testdata-inferencepool-leader-election-e2e-default-plugins.yaml", NULL},
};
#define N_CONFIGS (sizeof configs / sizeof *configs)

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    size_t got = fread(b, 1, (size_t)n, f);
    fclose(f);
    b[got] = 0;
    *len = got;
    return b;
}

static void test_every_config(void **state)
{
    (void)state;
    size_t loaded = 0;
    for (size_t i = 0; i < N_CONFIGS; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/" DIR_ "%s", TANDEM_SOURCE_DIR, configs[i].file);
        size_t len = 0;
        char *text = slurp(path, &len);
        if (!text)
            fail_msg("%s: cannot read", path);
        struct sched_datastore *ds = sched_ds_new();
        struct errinfo err;
        memset(&err, 0, sizeof err);
        struct sched *s = sched_new(ds, text, len, configs[i].file, &err);
        bool ok = s != NULL;
        sched_free(s);
        sched_ds_free(ds);
        free(text);
        if (!configs[i].blocked_by) {
            if (!ok)
                fail_msg("%s should load, got: %s", configs[i].file, err.msg);
            loaded++;
        } else {
            if (ok)
                fail_msg("%s loads now: move it to the loading side of the table",
                         configs[i].file);
            if (!strstr(err.msg, configs[i].blocked_by))
                fail_msg("%s: expected '%s', got: %s", configs[i].file, configs[i].blocked_by,
                         err.msg);
        }
    }
    printf("[ epp-configs ] %zu of %zu llm-d configs load\n", loaded, N_CONFIGS);
}

/* Every file in the directory is in the table (a newly copied config cannot be skipped). */
static void test_table_complete(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/" DIR_, TANDEM_SOURCE_DIR);
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    size_t files = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        files++;
        bool found = false;
        for (size_t i = 0; i < N_CONFIGS; i++)
            found = found || strcmp(configs[i].file, de->d_name) == 0;
        if (!found)
            fail_msg("%s is not in the table", de->d_name);
    }
    closedir(d);
    assert_int_equal(files, N_CONFIGS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_config),
        cmocka_unit_test(test_table_complete),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
