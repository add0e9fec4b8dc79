/* tandem router: the OpenAI-compatible gateway and endpoint picker (the `tandem router`
 * command). See ../shared/spec/router.md and docs/router.md. */
#ifndef TANDEM_ROUTER_ROUTER_H
#define TANDEM_ROUTER_ROUTER_H

/* Runs the router until SIGINT/SIGTERM. Returns the process exit code. */
int router_main(int argc, char **argv);
/* `tandem sidecar`: the P/D sidecar in front of one engine (docs/pd.md). */
int sidecar_main(int argc, char **argv);
/* The binary invoked as `vllm-router`: the router with vllm-router's flags and defaults
 * (docs/router.md, "vllm-router compatibility"). */
int vllm_router_main(int argc, char **argv);

#endif
