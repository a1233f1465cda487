# Sourced by run-vs-peer.sh and run-repeats.sh: isa_env ISA sets OURS and PEER, the `env` prefixes that run our
# benchmark and the peer on that instruction set. avx512 (or anything else): no change. avx2 on an AVX-512 machine:
# ours with CONVNET_CPU_ISA=avx2 (the 6x16 GEMM micro-kernel) and DOTNET_EnableAVX512=0 (.NET 10's switch for its own
# vector code), the peer with libtorch, oneMKL and oneDNN capped at AVX2.
isa_env() {
  if [ "$1" = avx2 ]; then
    OURS="env CONVNET_CPU_ISA=avx2 DOTNET_EnableAVX512=0"
    PEER="env ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 DNNL_MAX_CPU_ISA=AVX2"
  else
    OURS="env"; PEER="env"
  fi
}
