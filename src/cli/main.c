/* tandem: one multi-call binary. Each command is a row in the table below; a command's
 * entry function takes the arguments after its name. */
#include <stdio.h>
#include <string.h>

#include "bench/bench.h"
#include "ms/ms.h"
#include "router/router.h"
#include "sim/sim.h"

struct command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
};

static int cmd_version(int argc, char **argv);
static int cmd_help(int argc, char **argv);

static const struct command commands[] = {
    {"ms", "ModelService: generate its Kubernetes objects, or reconcile them (controller)", ms_main},
    {"up", "run a ModelService on this machine (sims, sidecars, router)", up_main},
    {"router", "OpenAI gateway and endpoint picker (llm-d scheduling: prefix, load, P/D)",
     router_main},
    {"bench", "load generator with vllm bench serve's metrics, reports and compare", bench_main},
    {"sidecar",
     "P/D sidecar for a decode pod (llm-d's routing sidecar: nixlv2 prefill then decode)",
     sidecar_main},
    {"sim", "vLLM-compatible engine simulator (OpenAI API, prefix cache, P/D, vLLM metrics)",
     sim_main},
    {"version", "print the version", cmd_version},
    {"help", "list commands, or show a command's help: tandem help COMMAND", cmd_help},
};
static const size_t n_commands = sizeof commands / sizeof commands[0];

static void usage(FILE *out)
{
    fprintf(out,
            "tandem %s: Kubernetes-native LLM serving with smart routing and P/D "
            "disaggregation\n\nusage: tandem COMMAND [flags]\n\ncommands:\n",
            TANDEM_VERSION);
    for (size_t i = 0; i < n_commands; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nEvery command takes --help.\n");
}

static int cmd_version(int argc, char **argv)
{
    if (argc > 0 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
        printf("usage: tandem version\n\nPrints tandem's version.\n");
        return 0;
    }
    if (argc > 0) {
        fprintf(stderr, "tandem version: unexpected argument '%s'\n", argv[0]);
        return 2;
    }
    printf("tandem %s\n", TANDEM_VERSION);
    return 0;
}

static const struct command *find(const char *name)
{
    for (size_t i = 0; i < n_commands; i++) {
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    }
    return NULL;
}

static int cmd_help(int argc, char **argv)
{
    if (argc == 0 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    const struct command *c = find(argv[0]);
    if (!c) {
        fprintf(stderr, "tandem help: unknown command '%s'\n", argv[0]);
        return 2;
    }
    char help[] = "--help";
    char *args[] = {help, NULL};
    return c->run(1, args);
}

int main(int argc, char **argv)
{
    /* Invoked through a link named vllm-router: vllm-router's command line. */
    const char *base = argc > 0 ? strrchr(argv[0], '/') : NULL;
    base = base ? base + 1 : argc > 0 ? argv[0] : "";
    if (strcmp(base, "vllm-router") == 0)
        return vllm_router_main(argc - 1, argv + 1);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0)
        return cmd_version(0, NULL);
    const struct command *c = find(argv[1]);
    if (!c) {
        fprintf(stderr, "tandem: unknown command '%s' (see tandem --help)\n", argv[1]);
        return 2;
    }
    return c->run(argc - 2, argv + 2);
}
