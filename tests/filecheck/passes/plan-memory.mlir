// RUN: tinymlir-opt %s --split-input-file -p 'plan-memory{align=1}' | filecheck %s
// RUN: tinymlir-opt %s --split-input-file -p 'plan-memory{in-place=false include-args=false strategy=first-fit}' | filecheck %s --check-prefix=OPTS
// RUN: tinymlir-opt %s --split-input-file -p 'plan-memory{align=1},plan-memory{align=1}' | filecheck %s
// RUN: not tinymlir-opt %s --split-input-file -p 'plan-memory{budget=200 align=1}' 2>&1 | filecheck %s --check-prefix=BUDGET
// RUN: not tinymlir-opt %s -p 'plan-memory{strategy=random}' 2>&1 | filecheck %s --check-prefix=BADOPT
// RUN: not tinymlir-opt %s --memory-report %t.json 2>&1 | filecheck %s --check-prefix=NOPASS
// RUN: tinymlir-opt %s --split-input-file -p plan-memory --memory-report %t.json -o /dev/null
// RUN: filecheck %s --check-prefix=REPORT --input-file %t.json

// The arena plan is recorded as attributes: the arena size, strategy, alignment and the
// arguments' offsets on the function, one offset per result on each op with a result in
// the arena, in-place reuse (%b overwrites %a, whose last use it is; %a cannot overwrite
// the argument %x) and the avgpool's scratch buffer (an int32 per channel).
// CHECK-LABEL: func.func @chain
// CHECK-SAME:    attributes {tinymlir.arena_bytes = 256 : i64, tinymlir.arena_strategy = "best-fit", tinymlir.arena_align = 1 : i64, tinymlir.arena_arg_offsets = array<i64: 128>}
// CHECK:       %a = cmsisnn.elementwise_add_s8 {{.*}} {arena_offsets = array<i64: 0>} :
// CHECK:       %b = cmsisnn.elementwise_add_s8 {{.*}} {arena_offsets = array<i64: 0>, arena_in_place = 0 : i64} :
// CHECK:       %p = cmsisnn.avgpool_s8 {{.*}} {arena_offsets = array<i64: 160>, arena_scratch_offset = 128 : i64, arena_scratch_bytes = 32 : i64} :
// CHECK-NEXT:  func.return %p

// Without in-place reuse %a and %b live together; without arguments in the arena %x has
// offset -1; the default alignment is 16 bytes.
// OPTS-LABEL: func.func @chain
// OPTS-SAME:    attributes {tinymlir.arena_bytes = 256 : i64, tinymlir.arena_strategy = "first-fit", tinymlir.arena_align = 16 : i64, tinymlir.arena_arg_offsets = array<i64: -1>}
// OPTS:       %a = cmsisnn.elementwise_add_s8 {{.*}} {arena_offsets = array<i64: 0>} :
// OPTS:       %b = cmsisnn.elementwise_add_s8 {{.*}} {arena_offsets = array<i64: 128>} :
// OPTS:       %p = cmsisnn.avgpool_s8 {{.*}} {arena_offsets = array<i64: 32>, arena_scratch_offset = 0 : i64, arena_scratch_bytes = 32 : i64} :

// BUDGET: tinymlir-opt: error: {{.*}}plan-memory.mlir: in pass 'plan-memory': @chain: arena of 256 bytes (best-fit) exceeds the budget of 200 bytes by 56 bytes; peak 256 bytes live at step 0, 'cmsisnn.elementwise_add_s8' (%a): %a 128 B, %x 128 B; {{.*}}
// BADOPT: tinymlir-opt: error: invalid options for pass 'plan-memory': strategy must be one of greedy-by-size, first-fit, best-fit; got 'random'
// NOPASS: tinymlir-opt: error: --memory-report: plan-memory did not run

// REPORT:      "format": "tinymlir-memory-report"
// REPORT:      "function": "chain"
// REPORT:      "strategy": "best-fit"
// REPORT:      "arena_bytes": 256
// REPORT:      "name": "cmsisnn.avgpool_s8#scratch@2"
// REPORT-NEXT: "kind": "scratch"
// REPORT:      "in_place_ops": [
// REPORT-NEXT:   {
// REPORT-NEXT:     "step": 1,
// REPORT-NEXT:     "op": "cmsisnn.elementwise_add_s8",
// REPORT-NEXT:     "operand": 0,
// REPORT-NEXT:     "buffer": "a"
// REPORT:      "function": "views"
func.func @chain(%x: tensor<1x4x4x8xi8>) -> tensor<1x1x1x8xi8> {
  %a = cmsisnn.elementwise_add_s8 %x, %x input1(offset = 0, multiplier = 1073741824, shift = 0) input2(offset = 0, multiplier = 1073741824, shift = 0) left_shift 20 output(offset = 0, multiplier = 1073741824, shift = -1) activation(-128, 127) : (tensor<1x4x4x8xi8>, tensor<1x4x4x8xi8>) -> tensor<1x4x4x8xi8>
  %b = cmsisnn.elementwise_add_s8 %a, %x input1(offset = 0, multiplier = 1073741824, shift = 0) input2(offset = 0, multiplier = 1073741824, shift = 0) left_shift 20 output(offset = 0, multiplier = 1073741824, shift = -1) activation(-128, 127) : (tensor<1x4x4x8xi8>, tensor<1x4x4x8xi8>) -> tensor<1x4x4x8xi8>
  %p = cmsisnn.avgpool_s8 %b kernel [4, 4] stride [1, 1] padding [0, 0] activation(-128, 127) : (tensor<1x4x4x8xi8>) -> tensor<1x1x1x8xi8>
  func.return %p : tensor<1x1x1x8xi8>
}

// -----

// A view (nn.flatten) shows the offset of the buffer it aliases; a flash constant, a
// non-tensor argument or result has none (-1, or no attribute at all).
// CHECK-LABEL: func.func @views
// CHECK-SAME:    tinymlir.arena_bytes = 192 : i64
// CHECK-SAME:    tinymlir.arena_arg_offsets = array<i64: 0, -1>
// CHECK:       %c = arith.constant dense<1.000000e+00> : tensor<1x4x2x3xf32>
// CHECK:       %a = nn.add %x, %c {arena_offsets = array<i64: 96>} :
// CHECK:       %f = nn.flatten %a {arena_offsets = array<i64: 96>, axis = 1 : i64} :
// CHECK:       train.softmax_cross_entropy %f, %label {arena_offsets = array<i64: -1, 0>} :
func.func @views(%x: tensor<1x4x2x3xf32>, %label: i32) -> f32 {
  %c = arith.constant dense<1.0> : tensor<1x4x2x3xf32>
  %a = nn.add %x, %c : (tensor<1x4x2x3xf32>, tensor<1x4x2x3xf32>) -> tensor<1x4x2x3xf32>
  %f = nn.flatten %a {axis = 1 : i64} : (tensor<1x4x2x3xf32>) -> tensor<1x24xf32>
  %loss, %g = train.softmax_cross_entropy %f, %label : (tensor<1x24xf32>, i32) -> (f32, tensor<1x24xf32>)
  func.return %loss : f32
}
