// RUN: tinymlir-opt %s --split-input-file --verify-diagnostics -p convert-quant-to-cmsisnn | filecheck %s

// A convolution after convert-layout: the adaptors disappear into the NHWC op, the
// OHWI weight becomes an i8 arith.constant, the quantized argument and result their
// storage integers. Multipliers: s_x * s_w[c] / s_y = 0.5 * {0.25, 0.125} / 0.25 =
// {0.5, 0.25} = 2**30 * 2**-31 * {2**0, 2**-1}; input_offset = -z_x, output_offset = z_y.
// CHECK-LABEL: func.func @conv
// CHECK-SAME:    (%[[X:.*]]: tensor<1x3x3x2xi8>) -> tensor<1x3x3x2xi8>
// CHECK-DAG:   %[[W:.*]] = arith.constant dense<{{\[\[\[\[}}1, 3], [2, 4]]], {{\[\[\[}}5, 7], [6, 8]]]]> : tensor<2x1x2x2xi8>
// CHECK-DAG:   %[[B:.*]] = arith.constant dense<[10, -20]> : tensor<2xi32>
// CHECK:       %[[Y:.*]] = cmsisnn.convolve_wrapper_s8 %[[X]], %[[W]], %[[B]] input_offset -1 output_offset -128 stride [1, 1] padding [0, 1] dilation [1, 1] activation(-128, 100) multipliers [1073741824, 1073741824] shifts [0, -1] : (tensor<1x3x3x2xi8>, tensor<2x1x2x2xi8>, tensor<2xi32>) -> tensor<1x3x3x2xi8>
// CHECK-NEXT:  func.return %[[Y]]
func.func @conv(%x_nhwc: tensor<1x3x3x2x!quant.uniform<i8:f32, 0.5:1>>) -> tensor<1x3x3x2x!quant.uniform<i8:f32, 0.25:-128>> {
  %x = nn.transpose %x_nhwc {perm = array<i64: 0, 3, 1, 2>} : (tensor<1x3x3x2x!quant.uniform<i8:f32, 0.5:1>>) -> tensor<1x2x3x3x!quant.uniform<i8:f32, 0.5:1>>
  %w_ohwi = quant.constant dense<[[[[1, 3], [2, 4]]], [[[5, 7], [6, 8]]]]> : tensor<2x1x2x2xi8> -> tensor<2x1x2x2x!quant.uniform<i8:f32:0, {0.25:0, 0.125:0}>>
  %w = nn.transpose %w_ohwi {perm = array<i64: 0, 3, 1, 2>} : (tensor<2x1x2x2x!quant.uniform<i8:f32:0, {0.25:0, 0.125:0}>>) -> tensor<2x2x1x2x!quant.uniform<i8:f32:0, {0.25:0, 0.125:0}>>
  %b = quant.constant dense<[10, -20]> : tensor<2xi32> -> tensor<2x!quant.uniform<i32:f32:0, {0.125:0, 0.0625:0}>>
  %y = quant.conv2d %x, %w, %b {strides = array<i64: 1, 1>, pads = array<i64: 0, 1, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64, act_min = -128 : i32, act_max = 100 : i32} : (tensor<1x2x3x3x!quant.uniform<i8:f32, 0.5:1>>, tensor<2x2x1x2x!quant.uniform<i8:f32:0, {0.25:0, 0.125:0}>>, tensor<2x!quant.uniform<i32:f32:0, {0.125:0, 0.0625:0}>>) -> tensor<1x2x3x3x!quant.uniform<i8:f32, 0.25:-128>>
  %y_nhwc = nn.transpose %y {perm = array<i64: 0, 2, 3, 1>} : (tensor<1x2x3x3x!quant.uniform<i8:f32, 0.25:-128>>) -> tensor<1x3x3x2x!quant.uniform<i8:f32, 0.25:-128>>
  func.return %y_nhwc : tensor<1x3x3x2x!quant.uniform<i8:f32, 0.25:-128>>
}

// -----

// An NCHW depthwise convolution (channel multiplier 2) without convert-layout: the
// pass transposes the input to NHWC and the result back, and the filter [4, 1, 1, 2]
// becomes [1, 1, 2, 4]: f[o, 0, 0, k] -> f'[0, 0, k, o]; 0.5 * 0.5 / 0.25 = 2**30 * 2**-31 * 2**1.
// CHECK-LABEL: func.func @depthwise_nchw
// CHECK-SAME:    (%[[X:.*]]: tensor<1x2x3x3xi8>)
// CHECK-DAG:   %[[XN:.*]] = nn.transpose %[[X]] {perm = array<i64: 0, 2, 3, 1>} : (tensor<1x2x3x3xi8>) -> tensor<1x3x3x2xi8>
// CHECK-DAG:   %[[W:.*]] = arith.constant dense<{{\[\[\[\[}}1, 3, 5, 7], [2, 4, 6, 8]]]]> : tensor<1x1x2x4xi8>
// CHECK:       %[[Y:.*]] = cmsisnn.depthwise_conv_wrapper_s8 %[[XN]], %[[W]] input_offset 0 output_offset 3 ch_mult 2 stride [1, 1] padding [0, 0] dilation [1, 1] activation(-128, 127) multipliers [1073741824, 1073741824, 1073741824, 1073741824] shifts [1, 1, 1, 1] : (tensor<1x3x3x2xi8>, tensor<1x1x2x4xi8>) -> tensor<1x3x2x4xi8>
// CHECK:       %[[YN:.*]] = nn.transpose %[[Y]] {perm = array<i64: 0, 3, 1, 2>} : (tensor<1x3x2x4xi8>) -> tensor<1x4x3x2xi8>
// CHECK:       func.return %[[YN]]
func.func @depthwise_nchw(%x: tensor<1x2x3x3x!quant.uniform<i8:f32, 0.5:0>>) -> tensor<1x4x3x2x!quant.uniform<i8:f32, 0.25:3>> {
  %w = quant.constant dense<[[[[1, 2]]], [[[3, 4]]], [[[5, 6]]], [[[7, 8]]]]> : tensor<4x1x1x2xi8> -> tensor<4x1x1x2x!quant.uniform<i8:f32, 0.5:0>>
  %y = quant.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 2 : i64} : (tensor<1x2x3x3x!quant.uniform<i8:f32, 0.5:0>>, tensor<4x1x1x2x!quant.uniform<i8:f32, 0.5:0>>) -> tensor<1x4x3x2x!quant.uniform<i8:f32, 0.25:3>>
  func.return %y : tensor<1x4x3x2x!quant.uniform<i8:f32, 0.25:3>>
}

// -----

// Fully connected: a per-tensor weight with zero-point 2 gives filter_offset -2 and one
// multiplier (arm_fully_connected_s8): 0.3 * 0.02 / 0.1 = 0.06 = 2061584302 * 2**-35.
// CHECK-LABEL: func.func @fully_connected
// CHECK:       cmsisnn.fully_connected_s8 %{{.*}}, %{{.*}} input_offset 5 filter_offset -2 output_offset 0 activation(-128, 127) multipliers [2061584302] shifts [-4] : (tensor<1x2xi8>, tensor<3x2xi8>) -> tensor<1x3xi8>
func.func @fully_connected(%x: tensor<1x2x!quant.uniform<i8:f32, 0.3:-5>>) -> tensor<1x3x!quant.uniform<i8:f32, 0.1:0>> {
  %w = quant.constant dense<[[1, 2], [3, 4], [5, 6]]> : tensor<3x2xi8> -> tensor<3x2x!quant.uniform<i8:f32, 0.02:2>>
  %y = quant.fully_connected %x, %w : (tensor<1x2x!quant.uniform<i8:f32, 0.3:-5>>, tensor<3x2x!quant.uniform<i8:f32, 0.02:2>>) -> tensor<1x3x!quant.uniform<i8:f32, 0.1:0>>
  func.return %y : tensor<1x3x!quant.uniform<i8:f32, 0.1:0>>
}

// -----

// Add, TFLite's parameters: twice_max = 2 * max(0.5, 0.25) = 1; inputs 0.5 / 1 and
// 0.25 / 1; output 1 / (2**20 * 1.0) = 2**30 * 2**-31 * 2**-19.
// CHECK-LABEL: func.func @add
// CHECK:       cmsisnn.elementwise_add_s8 %{{.*}}, %{{.*}} input1(offset = -1, multiplier = 1073741824, shift = 0) input2(offset = 2, multiplier = 1073741824, shift = -1) left_shift 20 output(offset = 3, multiplier = 1073741824, shift = -19) activation(3, 127)
func.func @add(%a: tensor<1x4x4x2x!quant.uniform<i8:f32, 0.5:1>>, %b: tensor<1x4x4x2x!quant.uniform<i8:f32, 0.25:-2>>) -> tensor<1x4x4x2x!quant.uniform<i8:f32, 1.0:3>> {
  %y = quant.add %a, %b {act_min = 3 : i32, act_max = 127 : i32} : (tensor<1x4x4x2x!quant.uniform<i8:f32, 0.5:1>>, tensor<1x4x4x2x!quant.uniform<i8:f32, 0.25:-2>>) -> tensor<1x4x4x2x!quant.uniform<i8:f32, 1.0:3>>
  func.return %y : tensor<1x4x4x2x!quant.uniform<i8:f32, 1.0:3>>
}

// -----

// Global average pool: with the same quantization in and out, arm_avgpool_s8 over the
// whole image; otherwise a depthwise convolution with constant weights 64 and one
// rounding: s_x / (H W s_y 64) = 0.5 / (4 * 0.125 * 64) = 2**-6 = 2**30 * 2**-31 * 2**-5.
// CHECK-LABEL: func.func @global_avg_pool
// CHECK:       %[[P:.*]] = cmsisnn.avgpool_s8 %{{.*}} kernel [2, 2] stride [1, 1] padding [0, 0] activation(-128, 127) : (tensor<1x2x2x3xi8>) -> tensor<1x1x1x3xi8>
// CHECK:       %[[UNIT:.*]] = arith.constant dense<64> : tensor<1x2x2x3xi8>
// CHECK:       cmsisnn.depthwise_conv_wrapper_s8 %{{.*}}, %[[UNIT]] input_offset 1 output_offset 4 ch_mult 1 stride [1, 1] padding [0, 0] dilation [1, 1] activation(-128, 127) multipliers [1073741824, 1073741824, 1073741824] shifts [-5, -5, -5] : (tensor<1x2x2x3xi8>, tensor<1x2x2x3xi8>) -> tensor<1x1x1x3xi8>
func.func @global_avg_pool(%x: tensor<1x3x2x2x!quant.uniform<i8:f32, 0.5:-1>>) -> (tensor<1x3x1x1x!quant.uniform<i8:f32, 0.5:-1>>, tensor<1x3x1x1x!quant.uniform<i8:f32, 0.125:4>>) {
  %same = quant.global_avg_pool %x : (tensor<1x3x2x2x!quant.uniform<i8:f32, 0.5:-1>>) -> tensor<1x3x1x1x!quant.uniform<i8:f32, 0.5:-1>>
  %other = quant.global_avg_pool %x : (tensor<1x3x2x2x!quant.uniform<i8:f32, 0.5:-1>>) -> tensor<1x3x1x1x!quant.uniform<i8:f32, 0.125:4>>
  func.return %same, %other : tensor<1x3x1x1x!quant.uniform<i8:f32, 0.5:-1>>, tensor<1x3x1x1x!quant.uniform<i8:f32, 0.125:4>>
}

// -----

// The float boundary and a requantize (own kernels): 0.5 / 0.2 = 2.5 = 1342177280 * 2**(2 - 31),
// the input shifted left by 20 bits first, so the shift is 2 - 20.
// CHECK-LABEL: func.func @boundary
// CHECK:       %[[Q:.*]] = cmsisnn.quantize_s8 %{{.*}} scale 5.000000e-01 zero_point 1 : (tensor<8xf32>) -> tensor<8xi8>
// CHECK:       %[[R:.*]] = cmsisnn.requantize_s8 %[[Q]] input_offset -1 output_offset -7 left_shift 20 multiplier 1342177280 shift -18 activation(-128, 127) : (tensor<8xi8>) -> tensor<8xi8>
// CHECK:       %[[D:.*]] = cmsisnn.dequantize_s8 %[[R]] scale 2.000000e-01 zero_point -7 : (tensor<8xi8>) -> tensor<8xf32>
// CHECK:       func.return %[[D]]
func.func @boundary(%x: tensor<8xf32>) -> tensor<8xf32> {
  %q = quant.quantize %x : tensor<8xf32> -> tensor<8x!quant.uniform<i8:f32, 0.5:1>>
  %r = quant.requantize %q : tensor<8x!quant.uniform<i8:f32, 0.5:1>> -> tensor<8x!quant.uniform<i8:f32, 0.2:-7>>
  %y = quant.dequantize %r : tensor<8x!quant.uniform<i8:f32, 0.2:-7>> -> tensor<8xf32>
  func.return %y : tensor<8xf32>
}

// -----

// A saturated bias (INT32_MIN, as quantizers leave it for a channel with a tiny weight
// scale) is moved just inside int32 minus the weights' reach, 256 * (|3| + |-4|), so
// CMSIS-NN's accumulator cannot wrap: -2147483648 -> -2147481855.
// CHECK-LABEL: func.func @saturated_bias
// CHECK:       %[[B:.*]] = arith.constant dense<-2147481855> : tensor<1xi32>
// CHECK:       cmsisnn.fully_connected_s8 %{{.*}}, %{{.*}}, %[[B]]
func.func @saturated_bias(%x: tensor<1x2x!quant.uniform<i8:f32, 0.5:0>>) -> tensor<1x1x!quant.uniform<i8:f32, 0.1:0>> {
  %w = quant.constant dense<[[3, -4]]> : tensor<1x2xi8> -> tensor<1x2x!quant.uniform<i8:f32, 1.0e-09:0>>
  %b = quant.constant dense<[-2147483648]> : tensor<1xi32> -> tensor<1x!quant.uniform<i32:f32, 5.0e-10:0>>
  %y = quant.fully_connected %x, %w, %b : (tensor<1x2x!quant.uniform<i8:f32, 0.5:0>>, tensor<1x2x!quant.uniform<i8:f32, 1.0e-09:0>>, tensor<1x!quant.uniform<i32:f32, 5.0e-10:0>>) -> tensor<1x1x!quant.uniform<i8:f32, 0.1:0>>
  func.return %y : tensor<1x1x!quant.uniform<i8:f32, 0.1:0>>
}

// -----

// A convolution with asymmetric weights has no CMSIS-NN kernel: the pass fails, naming the op.
func.func @asymmetric_weights(%x: tensor<1x2x4x4x!quant.uniform<i8:f32, 0.5:0>>) -> tensor<1x2x4x4x!quant.uniform<i8:f32, 0.1:0>> {
  %w = quant.constant dense<1> : tensor<2x2x1x1xi8> -> tensor<2x2x1x1x!quant.uniform<i8:f32, 0.01:3>>
  %asym = quant.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x2x4x4x!quant.uniform<i8:f32, 0.5:0>>, tensor<2x2x1x1x!quant.uniform<i8:f32, 0.01:3>>) -> tensor<1x2x4x4x!quant.uniform<i8:f32, 0.1:0>>
  func.return %asym : tensor<1x2x4x4x!quant.uniform<i8:f32, 0.1:0>>
}

// CHECK: convert-quant-to-cmsisnn: cannot lower %asym = quant.conv2d: CMSIS-NN convolutions need symmetric weights (zero-point 0)
