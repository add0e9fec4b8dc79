# Shared helpers of the bench scripts (sourced): free ports and waiting for HTTP.
# port: a free TCP port on 127.0.0.1 (the kernel's choice).
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# wait_http PORT PATH: until GET answers 2xx, at most 10 s; exits the script otherwise.
wait_http() {
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$1$2" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "no answer on :$1$2" >&2
  exit 1
}
