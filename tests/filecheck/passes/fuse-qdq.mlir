// RUN: tinymlir-opt %s --split-input-file -p fuse-qdq | filecheck %s

// Conv with a per-channel weight, an i32 bias of scale s_x * s_w and a ReLU6 folded
// into the output range: q(0) = -128 (the storage minimum), q(6) = 6 / 0.05 - 128 = -8.
// CHECK-LABEL: func.func @conv_relu6
// CHECK-SAME:    (%[[X:.*]]: tensor<1x2x4x4x!quant.uniform<i8:f32, 0.5:1>>)
// CHECK-DAG:   %[[W:.*]] = quant.constant {{.*}} -> tensor<2x2x3x3x!quant.uniform<i8:f32:0, {0.25:0, 0.125:0}>>
// CHECK-DAG:   %[[B:.*]] = quant.constant {{.*}} -> tensor<2x!quant.uniform<i32:f32:0, {0.125:0, 0.0625:0}>>
// CHECK:       %[[Y:.*]] = quant.conv2d %[[X]], %[[W]], %[[B]] {{{.*}}pads = array<i64: 1, 1, 1, 1>{{.*}}act_min = -128 : i32, act_max = -8 : i32} : {{.*}} -> tensor<1x2x4x4x!quant.uniform<i8:f32, 0.05:-128>>
// CHECK-NOT:   quant.dequantize
// CHECK-NOT:   nn.
// CHECK:       func.return %[[Y]]
func.func @conv_relu6(%x: tensor<1x2x4x4x!quant.uniform<i8:f32, 0.5:1>>) -> tensor<1x2x4x4x!quant.uniform<i8:f32, 0.05:-128>> {
  %w = quant.constant dense<[[[[1, 2, 3], [4, 5, 6], [7, 8, 9]], [[1, 0, -1], [2, 0, -2], [1, 0, -1]]], [[[-1, -2, -3], [1, 2, 3], [0, 0, 0]], [[5, 5, 5], [5, 5, 5], [5, 5, 5]]]]> : tensor<2x2x3x3xi8> -> tensor<2x2x3x3x!quant.uniform<i8:f32:0, {0.25:0, 0.125:0}>>
  %b = quant.constant dense<[100, -7]> : tensor<2xi32> -> tensor<2x!quant.uniform<i32:f32:0, {0.125:0, 0.0625:0}>>
  %xf = quant.dequantize %x : tensor<1x2x4x4x!quant.uniform<i8:f32, 0.5:1>> -> tensor<1x2x4x4xf32>
  %wf = quant.dequantize %w : tensor<2x2x3x3x!quant.uniform<i8:f32:0, {0.25:0, 0.125:0}>> -> tensor<2x2x3x3xf32>
  %bf = quant.dequantize %b : tensor<2x!quant.uniform<i32:f32:0, {0.125:0, 0.0625:0}>> -> tensor<2xf32>
  %c = nn.conv2d %xf, %wf, %bf {strides = array<i64: 1, 1>, pads = array<i64: 1, 1, 1, 1>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x4x4xf32>, tensor<2x2x3x3xf32>, tensor<2xf32>) -> tensor<1x2x4x4xf32>
  %r = nn.clip %c {min = 0.0 : f32, max = 6.0 : f32} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %y = quant.quantize %r : tensor<1x2x4x4xf32> -> tensor<1x2x4x4x!quant.uniform<i8:f32, 0.05:-128>>
  func.return %y : tensor<1x2x4x4x!quant.uniform<i8:f32, 0.05:-128>>
}

// -----

// A float bias that is an exact multiple of s_x * s_w = 0.125 becomes an i32 constant.
// CHECK-LABEL: func.func @depthwise_float_bias
// CHECK:       %[[B:.*]] = quant.constant dense<[4, -24]> : tensor<2xi32> -> tensor<2x!quant.uniform<i32:f32, 0.125:0>>
// CHECK:       quant.conv2d %{{.*}}, %{{.*}}, %[[B]] {{{.*}}groups = 2 : i64{{.*}}}
// CHECK-NOT:   arith.constant
func.func @depthwise_float_bias(%x: tensor<1x2x3x3x!quant.uniform<i8:f32, 0.5:0>>) -> tensor<1x2x3x3x!quant.uniform<i8:f32, 0.1:3>> {
  %w = quant.constant dense<[[[[1]]], [[[-2]]]]> : tensor<2x1x1x1xi8> -> tensor<2x1x1x1x!quant.uniform<i8:f32, 0.25:0>>
  %b = arith.constant dense<[0.5, -3.0]> : tensor<2xf32>
  %xf = quant.dequantize %x : tensor<1x2x3x3x!quant.uniform<i8:f32, 0.5:0>> -> tensor<1x2x3x3xf32>
  %wf = quant.dequantize %w : tensor<2x1x1x1x!quant.uniform<i8:f32, 0.25:0>> -> tensor<2x1x1x1xf32>
  %c = nn.conv2d %xf, %wf, %b {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 2 : i64} : (tensor<1x2x3x3xf32>, tensor<2x1x1x1xf32>, tensor<2xf32>) -> tensor<1x2x3x3xf32>
  %y = quant.quantize %c : tensor<1x2x3x3xf32> -> tensor<1x2x3x3x!quant.uniform<i8:f32, 0.1:3>>
  func.return %y : tensor<1x2x3x3x!quant.uniform<i8:f32, 0.1:3>>
}

// -----

// Negative: 0.1 is not a multiple of s_x * s_w = 0.125, so no i32 bias means the same
// thing; the pattern stays as it is.
// CHECK-LABEL: func.func @inexact_float_bias
// CHECK:       nn.conv2d
// CHECK:       quant.quantize
// CHECK-NOT:   quant.conv2d
func.func @inexact_float_bias(%x: tensor<1x2x3x3x!quant.uniform<i8:f32, 0.5:0>>) -> tensor<1x2x3x3x!quant.uniform<i8:f32, 0.1:3>> {
  %w = quant.constant dense<[[[[1]]], [[[-2]]]]> : tensor<2x1x1x1xi8> -> tensor<2x1x1x1x!quant.uniform<i8:f32, 0.25:0>>
  %b = arith.constant dense<[0.1, -3.0]> : tensor<2xf32>
  %xf = quant.dequantize %x : tensor<1x2x3x3x!quant.uniform<i8:f32, 0.5:0>> -> tensor<1x2x3x3xf32>
  %wf = quant.dequantize %w : tensor<2x1x1x1x!quant.uniform<i8:f32, 0.25:0>> -> tensor<2x1x1x1xf32>
  %c = nn.conv2d %xf, %wf, %b {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 2 : i64} : (tensor<1x2x3x3xf32>, tensor<2x1x1x1xf32>, tensor<2xf32>) -> tensor<1x2x3x3xf32>
  %y = quant.quantize %c : tensor<1x2x3x3xf32> -> tensor<1x2x3x3x!quant.uniform<i8:f32, 0.1:3>>
  func.return %y : tensor<1x2x3x3x!quant.uniform<i8:f32, 0.1:3>>
}

// -----

// Negative: the float conv result is also returned, so it must stay.
// CHECK-LABEL: func.func @conv_used_twice
// CHECK:       nn.conv2d
// CHECK-NOT:   quant.conv2d
func.func @conv_used_twice(%x: tensor<1x1x2x2x!quant.uniform<i8:f32, 0.5:0>>) -> (tensor<1x1x2x2x!quant.uniform<i8:f32, 0.5:0>>, tensor<1x1x2x2xf32>) {
  %w = quant.constant dense<3> : tensor<1x1x1x1xi8> -> tensor<1x1x1x1x!quant.uniform<i8:f32, 0.25:0>>
  %xf = quant.dequantize %x : tensor<1x1x2x2x!quant.uniform<i8:f32, 0.5:0>> -> tensor<1x1x2x2xf32>
  %wf = quant.dequantize %w : tensor<1x1x1x1x!quant.uniform<i8:f32, 0.25:0>> -> tensor<1x1x1x1xf32>
  %c = nn.conv2d %xf, %wf {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x1x2x2xf32>, tensor<1x1x1x1xf32>) -> tensor<1x1x2x2xf32>
  %y = quant.quantize %c : tensor<1x1x2x2xf32> -> tensor<1x1x2x2x!quant.uniform<i8:f32, 0.5:0>>
  func.return %y, %c : tensor<1x1x2x2x!quant.uniform<i8:f32, 0.5:0>>, tensor<1x1x2x2xf32>
}

// -----

// Gemm with transB = 1 and a ReLU: act_min = q(0) = the zero-point.
// CHECK-LABEL: func.func @gemm_relu
// CHECK-SAME:    (%[[X:.*]]: tensor<1x3x!quant.uniform<i8:f32, 0.5:0>>)
// CHECK:       %[[Y:.*]] = quant.fully_connected %[[X]], %{{.*}}, %{{.*}} {act_min = -5 : i32, act_max = 127 : i32} : {{.*}} -> tensor<1x2x!quant.uniform<i8:f32, 0.25:-5>>
// CHECK:       func.return %[[Y]]
func.func @gemm_relu(%x: tensor<1x3x!quant.uniform<i8:f32, 0.5:0>>) -> tensor<1x2x!quant.uniform<i8:f32, 0.25:-5>> {
  %w = quant.constant dense<[[1, 2, 3], [-4, 5, -6]]> : tensor<2x3xi8> -> tensor<2x3x!quant.uniform<i8:f32, 0.5:0>>
  %b = quant.constant dense<[10, -10]> : tensor<2xi32> -> tensor<2x!quant.uniform<i32:f32, 0.25:0>>
  %xf = quant.dequantize %x : tensor<1x3x!quant.uniform<i8:f32, 0.5:0>> -> tensor<1x3xf32>
  %wf = quant.dequantize %w : tensor<2x3x!quant.uniform<i8:f32, 0.5:0>> -> tensor<2x3xf32>
  %bf = quant.dequantize %b : tensor<2x!quant.uniform<i32:f32, 0.25:0>> -> tensor<2xf32>
  %g = nn.gemm %xf, %wf, %bf {alpha = 1.0 : f32, beta = 1.0 : f32, trans_a = false, trans_b = true} : (tensor<1x3xf32>, tensor<2x3xf32>, tensor<2xf32>) -> tensor<1x2xf32>
  %r = nn.relu %g : (tensor<1x2xf32>) -> tensor<1x2xf32>
  %y = quant.quantize %r : tensor<1x2xf32> -> tensor<1x2x!quant.uniform<i8:f32, 0.25:-5>>
  func.return %y : tensor<1x2x!quant.uniform<i8:f32, 0.25:-5>>
}

// -----

// Gemm with transB = 0: the constant weight [in, out] is transposed to [out, in].
// CHECK-LABEL: func.func @gemm_untransposed
// CHECK:       %[[W:.*]] = quant.constant dense<{{\[}}[1, 3, 5], [2, 4, 6]]> : tensor<2x3xi8> -> tensor<2x3x!quant.uniform<i8:f32, 0.5:0>>
// CHECK:       quant.fully_connected %{{.*}}, %[[W]] :
func.func @gemm_untransposed(%x: tensor<1x3x!quant.uniform<i8:f32, 0.5:0>>) -> tensor<1x2x!quant.uniform<i8:f32, 0.25:0>> {
  %w = quant.constant dense<[[1, 2], [3, 4], [5, 6]]> : tensor<3x2xi8> -> tensor<3x2x!quant.uniform<i8:f32, 0.5:0>>
  %xf = quant.dequantize %x : tensor<1x3x!quant.uniform<i8:f32, 0.5:0>> -> tensor<1x3xf32>
  %wf = quant.dequantize %w : tensor<3x2x!quant.uniform<i8:f32, 0.5:0>> -> tensor<3x2xf32>
  %g = nn.gemm %xf, %wf {alpha = 1.0 : f32, beta = 1.0 : f32, trans_a = false, trans_b = false} : (tensor<1x3xf32>, tensor<3x2xf32>) -> tensor<1x2xf32>
  %y = quant.quantize %g : tensor<1x2xf32> -> tensor<1x2x!quant.uniform<i8:f32, 0.25:0>>
  func.return %y : tensor<1x2x!quant.uniform<i8:f32, 0.25:0>>
}

// -----

// Negative: alpha = 2 is not expressible by quant.fully_connected.
// CHECK-LABEL: func.func @gemm_alpha
// CHECK:       nn.gemm
// CHECK-NOT:   quant.fully_connected
func.func @gemm_alpha(%x: tensor<1x3x!quant.uniform<i8:f32, 0.5:0>>) -> tensor<1x2x!quant.uniform<i8:f32, 0.25:0>> {
  %w = quant.constant dense<[[1, 2, 3], [-4, 5, -6]]> : tensor<2x3xi8> -> tensor<2x3x!quant.uniform<i8:f32, 0.5:0>>
  %xf = quant.dequantize %x : tensor<1x3x!quant.uniform<i8:f32, 0.5:0>> -> tensor<1x3xf32>
  %wf = quant.dequantize %w : tensor<2x3x!quant.uniform<i8:f32, 0.5:0>> -> tensor<2x3xf32>
  %g = nn.gemm %xf, %wf {alpha = 2.0 : f32, beta = 1.0 : f32, trans_a = false, trans_b = true} : (tensor<1x3xf32>, tensor<2x3xf32>) -> tensor<1x2xf32>
  %y = quant.quantize %g : tensor<1x2xf32> -> tensor<1x2x!quant.uniform<i8:f32, 0.25:0>>
  func.return %y : tensor<1x2x!quant.uniform<i8:f32, 0.25:0>>
}

// -----

// Residual add; the shared dequantize of %a feeds both the add and the next op.
// CHECK-LABEL: func.func @add
// CHECK-SAME:    (%[[A:.*]]: tensor<1x4x2x2x!quant.uniform<i8:f32, 0.1:-3>>, %[[B:.*]]: tensor<1x4x2x2x!quant.uniform<i8:f32, 0.2:7>>)
// CHECK:       %[[S:.*]] = quant.add %[[A]], %[[B]] : {{.*}} -> tensor<1x4x2x2x!quant.uniform<i8:f32, 0.3:0>>
// CHECK:       %[[P:.*]] = quant.global_avg_pool %[[S]] : {{.*}} -> tensor<1x4x1x1x!quant.uniform<i8:f32, 0.1:-1>>
// CHECK-NOT:   quant.dequantize
// CHECK:       func.return %[[P]]
func.func @add(%a: tensor<1x4x2x2x!quant.uniform<i8:f32, 0.1:-3>>, %b: tensor<1x4x2x2x!quant.uniform<i8:f32, 0.2:7>>) -> tensor<1x4x1x1x!quant.uniform<i8:f32, 0.1:-1>> {
  %af = quant.dequantize %a : tensor<1x4x2x2x!quant.uniform<i8:f32, 0.1:-3>> -> tensor<1x4x2x2xf32>
  %bf = quant.dequantize %b : tensor<1x4x2x2x!quant.uniform<i8:f32, 0.2:7>> -> tensor<1x4x2x2xf32>
  %s = nn.add %af, %bf : (tensor<1x4x2x2xf32>, tensor<1x4x2x2xf32>) -> tensor<1x4x2x2xf32>
  %sq = quant.quantize %s : tensor<1x4x2x2xf32> -> tensor<1x4x2x2x!quant.uniform<i8:f32, 0.3:0>>
  %sf = quant.dequantize %sq : tensor<1x4x2x2x!quant.uniform<i8:f32, 0.3:0>> -> tensor<1x4x2x2xf32>
  %p = nn.global_avg_pool %sf : (tensor<1x4x2x2xf32>) -> tensor<1x4x1x1xf32>
  %pq = quant.quantize %p : tensor<1x4x1x1xf32> -> tensor<1x4x1x1x!quant.uniform<i8:f32, 0.1:-1>>
  func.return %pq : tensor<1x4x1x1x!quant.uniform<i8:f32, 0.1:-1>>
}

// -----

// Negative: quant.add does not broadcast.
// CHECK-LABEL: func.func @add_broadcast
// CHECK:       nn.add
// CHECK-NOT:   quant.add
func.func @add_broadcast(%a: tensor<1x4x2x2x!quant.uniform<i8:f32, 0.1:0>>, %b: tensor<1x4x1x1x!quant.uniform<i8:f32, 0.1:0>>) -> tensor<1x4x2x2x!quant.uniform<i8:f32, 0.1:0>> {
  %af = quant.dequantize %a : tensor<1x4x2x2x!quant.uniform<i8:f32, 0.1:0>> -> tensor<1x4x2x2xf32>
  %bf = quant.dequantize %b : tensor<1x4x1x1x!quant.uniform<i8:f32, 0.1:0>> -> tensor<1x4x1x1xf32>
  %s = nn.add %af, %bf : (tensor<1x4x2x2xf32>, tensor<1x4x1x1xf32>) -> tensor<1x4x2x2xf32>
  %sq = quant.quantize %s : tensor<1x4x2x2xf32> -> tensor<1x4x2x2x!quant.uniform<i8:f32, 0.1:0>>
  func.return %sq : tensor<1x4x2x2x!quant.uniform<i8:f32, 0.1:0>>
}

// -----

// quantize(dequantize(x)) to the same type is x.
// CHECK-LABEL: func.func @qdq_roundtrip
// CHECK-SAME:    (%[[X:.*]]: tensor<4x!quant.uniform<u8:f32, 0.02:128>>)
// CHECK-NEXT:  func.return %[[X]]
func.func @qdq_roundtrip(%x: tensor<4x!quant.uniform<u8:f32, 0.02:128>>) -> tensor<4x!quant.uniform<u8:f32, 0.02:128>> {
  %f = quant.dequantize %x : tensor<4x!quant.uniform<u8:f32, 0.02:128>> -> tensor<4xf32>
  %q = quant.quantize %f : tensor<4xf32> -> tensor<4x!quant.uniform<u8:f32, 0.02:128>>
  func.return %q : tensor<4x!quant.uniform<u8:f32, 0.02:128>>
}
