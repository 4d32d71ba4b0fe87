// RUN: tinymlir-opt %s --split-input-file -p convert-layout | filecheck %s

// Two convolutions: the argument is transposed to NHWC once; each conv reads NHWC data
// and its OHWI weight through NHWC -> NCHW / OHWI -> OIHW views and hands its result on
// as NHWC; the 4-D result goes back to NCHW before the return. The weight [2, 2, 1, 2]
// (OIHW) is stored as OHWI [2, 1, 2, 2]: w[o, i, 0, k] -> w'[o, 0, k, i].
// CHECK-LABEL: func.func @conv_chain
// CHECK-SAME:    (%[[X:.*]]: tensor<1x2x3x3x!quant.uniform<i8:f32, 0.5:1>>)
// CHECK:       %[[XN:.*]] = nn.transpose %[[X]] {perm = array<i64: 0, 2, 3, 1>} : {{.*}} -> tensor<1x3x3x2x!quant.uniform<i8:f32, 0.5:1>>
// CHECK:       %[[XV:.*]] = nn.transpose %[[XN]] {perm = array<i64: 0, 3, 1, 2>}
// CHECK:       %[[W:.*]] = quant.constant dense<{{\[\[\[\[}}1, 3], [2, 4]]], {{\[\[\[}}5, 7], [6, 8]]]]> : tensor<2x1x2x2xi8> -> tensor<2x1x2x2x!quant.uniform<i8:f32:0, {0.25:0, 0.125:0}>>
// CHECK:       %[[WV:.*]] = nn.transpose %[[W]] {perm = array<i64: 0, 3, 1, 2>} : {{.*}} -> tensor<2x2x1x2x!quant.uniform<i8:f32:0, {0.25:0, 0.125:0}>>
// CHECK:       %[[C1:.*]] = quant.conv2d %[[XV]], %[[WV]]
// CHECK:       %[[C1N:.*]] = nn.transpose %[[C1]] {perm = array<i64: 0, 2, 3, 1>} : {{.*}} -> tensor<1x3x2x2x!quant.uniform<i8:f32, 0.25:-3>>
// CHECK:       %[[C1V:.*]] = nn.transpose %[[C1N]] {perm = array<i64: 0, 3, 1, 2>}
// CHECK:       %[[C2:.*]] = quant.conv2d %[[C1V]], %{{.*}}
// CHECK:       %[[C2N:.*]] = nn.transpose %[[C2]] {perm = array<i64: 0, 2, 3, 1>}
// CHECK:       %[[Y:.*]] = nn.transpose %[[C2N]] {perm = array<i64: 0, 3, 1, 2>} : {{.*}} -> tensor<1x2x3x2x!quant.uniform<i8:f32, 0.5:0>>
// CHECK:       func.return %[[Y]]
func.func @conv_chain(%x: tensor<1x2x3x3x!quant.uniform<i8:f32, 0.5:1>>) -> tensor<1x2x3x2x!quant.uniform<i8:f32, 0.5:0>> {
  %w = quant.constant dense<[[[[1, 2]], [[3, 4]]], [[[5, 6]], [[7, 8]]]]> : tensor<2x2x1x2xi8> -> tensor<2x2x1x2x!quant.uniform<i8:f32:0, {0.25:0, 0.125:0}>>
  %c1 = quant.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x3x3x!quant.uniform<i8:f32, 0.5:1>>, tensor<2x2x1x2x!quant.uniform<i8:f32:0, {0.25:0, 0.125:0}>>) -> tensor<1x2x3x2x!quant.uniform<i8:f32, 0.25:-3>>
  %w2 = quant.constant dense<[[[[1]], [[-1]]], [[[2]], [[0]]]]> : tensor<2x2x1x1xi8> -> tensor<2x2x1x1x!quant.uniform<i8:f32, 0.5:0>>
  %c2 = quant.conv2d %c1, %w2 {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x3x2x!quant.uniform<i8:f32, 0.25:-3>>, tensor<2x2x1x1x!quant.uniform<i8:f32, 0.5:0>>) -> tensor<1x2x3x2x!quant.uniform<i8:f32, 0.5:0>>
  func.return %c2 : tensor<1x2x3x2x!quant.uniform<i8:f32, 0.5:0>>
}

// -----

// A residual add runs on the NHWC tensors themselves; the global average pool reads
// NHWC through a view and hands [1, 1, 1, C] on, which the flatten reads directly
// (same bytes as [1, C, 1, 1]); the FC is layout-free. Only the argument is transposed.
// CHECK-LABEL: func.func @residual_pool_fc
// CHECK:       %[[C:.*]] = quant.conv2d
// CHECK:       %[[CN:.*]] = nn.transpose %[[C]] {perm = array<i64: 0, 2, 3, 1>}
// CHECK:       %[[S:.*]] = quant.add %[[XN:.*]], %[[CN]] : (tensor<1x2x2x2x{{.*}}>, tensor<1x2x2x2x{{.*}}>) -> tensor<1x2x2x2x!quant.uniform<i8:f32, 0.75:2>>
// CHECK:       %[[SV:.*]] = nn.transpose %[[S]] {perm = array<i64: 0, 3, 1, 2>}
// CHECK:       %[[G:.*]] = quant.global_avg_pool %[[SV]]
// CHECK:       %[[GN:.*]] = nn.transpose %[[G]] {perm = array<i64: 0, 2, 3, 1>} : {{.*}} -> tensor<1x1x1x2x!quant.uniform<i8:f32, 0.75:2>>
// CHECK:       %[[F:.*]] = nn.flatten %[[GN]] {axis = 1 : i64} : (tensor<1x1x1x2x{{.*}}>) -> tensor<1x2x
// CHECK:       quant.fully_connected %[[F]]
// CHECK-NOT:   nn.transpose
func.func @residual_pool_fc(%x: tensor<1x2x2x2x!quant.uniform<i8:f32, 0.5:0>>) -> tensor<1x3x!quant.uniform<i8:f32, 0.1:0>> {
  %w = quant.constant dense<[[[[1]], [[2]]], [[[3]], [[4]]]]> : tensor<2x2x1x1xi8> -> tensor<2x2x1x1x!quant.uniform<i8:f32, 0.25:0>>
  %c = quant.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x2x2x!quant.uniform<i8:f32, 0.5:0>>, tensor<2x2x1x1x!quant.uniform<i8:f32, 0.25:0>>) -> tensor<1x2x2x2x!quant.uniform<i8:f32, 0.5:0>>
  %s = quant.add %x, %c : (tensor<1x2x2x2x!quant.uniform<i8:f32, 0.5:0>>, tensor<1x2x2x2x!quant.uniform<i8:f32, 0.5:0>>) -> tensor<1x2x2x2x!quant.uniform<i8:f32, 0.75:2>>
  %g = quant.global_avg_pool %s : (tensor<1x2x2x2x!quant.uniform<i8:f32, 0.75:2>>) -> tensor<1x2x1x1x!quant.uniform<i8:f32, 0.75:2>>
  %f = nn.flatten %g {axis = 1 : i64} : (tensor<1x2x1x1x!quant.uniform<i8:f32, 0.75:2>>) -> tensor<1x2x!quant.uniform<i8:f32, 0.75:2>>
  %fw = quant.constant dense<[[1, 2], [3, 4], [5, 6]]> : tensor<3x2xi8> -> tensor<3x2x!quant.uniform<i8:f32, 0.5:0>>
  %y = quant.fully_connected %f, %fw : (tensor<1x2x!quant.uniform<i8:f32, 0.75:2>>, tensor<3x2x!quant.uniform<i8:f32, 0.5:0>>) -> tensor<1x3x!quant.uniform<i8:f32, 0.1:0>>
  func.return %y : tensor<1x3x!quant.uniform<i8:f32, 0.1:0>>
}

// -----

// A flatten of a [1, C, H, W] tensor into an FC: the FC reads the NHWC flatten, and its
// weight's columns are permuted from (c, h, w) to (h, w, c) order: [[1, 2, 3, 4]] with
// C = 2, H = 1, W = 2 becomes [[1, 3, 2, 4]].
// CHECK-LABEL: func.func @flatten_spatial_fc
// CHECK:       %[[W:.*]] = quant.constant dense<{{\[\[}}1, 3, 2, 4]]> : tensor<1x4xi8>
// CHECK:       %[[F:.*]] = nn.flatten %[[XN:.*]] {axis = 1 : i64} : (tensor<1x1x2x2x{{.*}}>) -> tensor<1x4x
// CHECK:       quant.fully_connected %[[F]], %[[W]]
func.func @flatten_spatial_fc(%x: tensor<1x2x1x2x!quant.uniform<i8:f32, 0.5:0>>) -> tensor<1x1x!quant.uniform<i8:f32, 0.1:0>> {
  %w = quant.constant dense<[[[[1]], [[1]]], [[[1]], [[-1]]]]> : tensor<2x2x1x1xi8> -> tensor<2x2x1x1x!quant.uniform<i8:f32, 0.25:0>>
  %c = quant.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x1x2x!quant.uniform<i8:f32, 0.5:0>>, tensor<2x2x1x1x!quant.uniform<i8:f32, 0.25:0>>) -> tensor<1x2x1x2x!quant.uniform<i8:f32, 0.5:0>>
  %f = nn.flatten %c {axis = 1 : i64} : (tensor<1x2x1x2x!quant.uniform<i8:f32, 0.5:0>>) -> tensor<1x4x!quant.uniform<i8:f32, 0.5:0>>
  %fw = quant.constant dense<[[1, 2, 3, 4]]> : tensor<1x4xi8> -> tensor<1x4x!quant.uniform<i8:f32, 0.5:0>>
  %y = quant.fully_connected %f, %fw : (tensor<1x4x!quant.uniform<i8:f32, 0.5:0>>, tensor<1x4x!quant.uniform<i8:f32, 0.5:0>>) -> tensor<1x1x!quant.uniform<i8:f32, 0.1:0>>
  func.return %y : tensor<1x1x!quant.uniform<i8:f32, 0.1:0>>
}

// -----

// The float boundary: the input quantize's result is transposed to NHWC once; a 4-D
// result is transposed back before its dequantize. Float ops are left alone.
// CHECK-LABEL: func.func @float_boundary
// CHECK:       %[[Q:.*]] = quant.quantize %{{.*}} : tensor<1x2x2x2xf32> -> tensor<1x2x2x2x
// CHECK:       %[[QN:.*]] = nn.transpose %[[Q]] {perm = array<i64: 0, 2, 3, 1>}
// CHECK:       quant.conv2d
// CHECK:       %[[CN:.*]] = nn.transpose %{{.*}} {perm = array<i64: 0, 2, 3, 1>}
// CHECK:       %[[CV:.*]] = nn.transpose %[[CN]] {perm = array<i64: 0, 3, 1, 2>}
// CHECK:       quant.dequantize %[[CV]] : tensor<1x2x2x2x
func.func @float_boundary(%x: tensor<1x2x2x2xf32>) -> tensor<1x2x2x2xf32> {
  %q = quant.quantize %x : tensor<1x2x2x2xf32> -> tensor<1x2x2x2x!quant.uniform<i8:f32, 0.5:0>>
  %w = quant.constant dense<[[[[1]], [[2]]], [[[3]], [[4]]]]> : tensor<2x2x1x1xi8> -> tensor<2x2x1x1x!quant.uniform<i8:f32, 0.25:0>>
  %c = quant.conv2d %q, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x2x2x!quant.uniform<i8:f32, 0.5:0>>, tensor<2x2x1x1x!quant.uniform<i8:f32, 0.25:0>>) -> tensor<1x2x2x2x!quant.uniform<i8:f32, 0.5:0>>
  %y = quant.dequantize %c : tensor<1x2x2x2x!quant.uniform<i8:f32, 0.5:0>> -> tensor<1x2x2x2xf32>
  func.return %y : tensor<1x2x2x2xf32>
}
