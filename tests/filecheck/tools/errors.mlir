// tinymlir-opt's driver: pass pipelines with options, and one-line errors for bad pipelines
// and files (tests/test_cli_errors.py checks exit codes, syntax and verifier errors).
// RUN: tinymlir-opt %s -p 'arith-add-fastmath{flags=fast},cse' --print-between-passes | filecheck %s --check-prefix=PIPE
// RUN: not tinymlir-opt %s -p nosuch 2>&1 | filecheck %s --check-prefix=UNKNOWN
// RUN: not tinymlir-opt %s -p 'arith-add-fastmath{bogus=1}' 2>&1 | filecheck %s --check-prefix=OPTION
// RUN: not tinymlir-opt %s -p 'cse{' 2>&1 | filecheck %s --check-prefix=SPEC
// RUN: not tinymlir-opt %S/does-not-exist.mlir 2>&1 | filecheck %s --check-prefix=MISSING

func.func @f(%a: f32) -> f32 {
  %0 = arith.addf %a, %a : f32
  %1 = arith.addf %a, %a : f32
  %2 = arith.mulf %0, %1 : f32
  func.return %2 : f32
}

// PIPE:       IR after arith-add-fastmath:
// PIPE:       arith.addf %{{.*}}, %{{.*}} fastmath<fast> : f32
// PIPE:       arith.addf %{{.*}}, %{{.*}} fastmath<fast> : f32
// PIPE:       builtin.module
// PIPE:         %[[S:.*]] = arith.addf %{{.*}}, %{{.*}} fastmath<fast> : f32
// PIPE-NEXT:    arith.mulf %[[S]], %[[S]] fastmath<fast> : f32

// UNKNOWN: tinymlir-opt: error: unknown pass 'nosuch'
// OPTION:  tinymlir-opt: error: invalid options for pass 'arith-add-fastmath': {{.*}}"bogus"{{.*}} (its options are flags)
// SPEC:    tinymlir-opt: error: invalid pass pipeline 'cse{': Expected argument name here at column 5
// MISSING: tinymlir-opt: error: cannot open '{{.*}}does-not-exist.mlir': No such file or directory

