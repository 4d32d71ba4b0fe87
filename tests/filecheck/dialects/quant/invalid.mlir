// Each verifier and type-parsing error of the quant dialect: one case per split-input chunk.
// RUN: tinymlir-opt %s --split-input-file --parsing-diagnostics --verify-diagnostics | filecheck %s

func.func @storage_type(%x: tensor<4x!quant.uniform<i4:f32, 0.5:0>>) {
  func.return
}

// CHECK: unsupported storage type 'i4', expected i8, u8, i16 or i32

// -----

func.func @expressed_type(%x: tensor<4x!quant.uniform<i8:f16, 0.5:0>>) {
  func.return
}

// CHECK: expected expressed type 'f32'

// -----

func.func @zero_point_i8(%x: tensor<4x!quant.uniform<i8:f32, 0.5:128>>) {
  func.return
}

// CHECK: zero-point 128 is outside the i8 storage range

// -----

func.func @zero_point_u8(%x: tensor<4x!quant.uniform<u8:f32, 0.5:-1>>) {
  func.return
}

// CHECK: zero-point -1 is outside the u8 storage range

// -----

func.func @zero_scale(%x: tensor<4x!quant.uniform<i8:f32, 0.0:0>>) {
  func.return
}

// CHECK: quantization scale must be positive and finite, got 0.0

// -----

func.func @negative_scale(%x: tensor<2x4x!quant.uniform<i8:f32:0, {0.5:0, -0.25:0}>>) {
  func.return
}

// CHECK: quantization scale must be positive and finite, got -0.25

// -----

func.func @per_channel_count(%x: tensor<3x4x!quant.uniform<i8:f32:0, {0.1:0, 0.2:0}>>) -> tensor<3x4xf32> {
  %0 = quant.dequantize %x : tensor<3x4x!quant.uniform<i8:f32:0, {0.1:0, 0.2:0}>> -> tensor<3x4xf32>
  func.return %0 : tensor<3x4xf32>
}

// CHECK: quant.dequantize operand: per-channel quantization along axis 0 has 2 scales but the tensor shape is [3, 4]

// -----

func.func @per_channel_axis(%x: tensor<4x!quant.uniform<i8:f32:1, {0.1:0, 0.2:0}>>) -> tensor<4xf32> {
  %0 = quant.dequantize %x : tensor<4x!quant.uniform<i8:f32:1, {0.1:0, 0.2:0}>> -> tensor<4xf32>
  func.return %0 : tensor<4xf32>
}

// CHECK: quant.dequantize operand: per-channel quantization along axis 1 has 2 scales but the tensor shape is [4]

// -----

func.func @constant_shape() -> tensor<3x!quant.uniform<i8:f32, 0.5:0>> {
  %0 = quant.constant dense<[1, 2]> : tensor<2xi8> -> tensor<3x!quant.uniform<i8:f32, 0.5:0>>
  func.return %0 : tensor<3x!quant.uniform<i8:f32, 0.5:0>>
}

// CHECK: quant.constant value shape [2] differs from the result shape [3]

// -----

func.func @constant_width() -> tensor<2x!quant.uniform<i8:f32, 0.5:0>> {
  %0 = quant.constant dense<[1, 2]> : tensor<2xi32> -> tensor<2x!quant.uniform<i8:f32, 0.5:0>>
  func.return %0 : tensor<2x!quant.uniform<i8:f32, 0.5:0>>
}

// CHECK: quant.constant value must hold 8-bit integers, got i32

// -----

func.func @quantize_shape(%x: tensor<1x4xf32>) -> tensor<4x!quant.uniform<i8:f32, 0.5:-3>> {
  %0 = quant.quantize %x : tensor<1x4xf32> -> tensor<4x!quant.uniform<i8:f32, 0.5:-3>>
  func.return %0 : tensor<4x!quant.uniform<i8:f32, 0.5:-3>>
}

// CHECK: quant.quantize: operand shape [1, 4] differs from result shape [4]

// -----

func.func @requantize_per_channel(%x: tensor<2x!quant.uniform<i8:f32:0, {0.1:0, 0.2:0}>>) -> tensor<2x!quant.uniform<i8:f32, 0.5:0>> {
  %0 = quant.requantize %x : tensor<2x!quant.uniform<i8:f32:0, {0.1:0, 0.2:0}>> -> tensor<2x!quant.uniform<i8:f32, 0.5:0>>
  func.return %0 : tensor<2x!quant.uniform<i8:f32, 0.5:0>>
}

// CHECK: quant.requantize operand must be quantized per-tensor

// -----

func.func @bias_scale(%x: tensor<1x8x!quant.uniform<i8:f32, 0.5:-3>>, %w: tensor<2x8x!quant.uniform<i8:f32:0, {0.25:0, 0.125:0}>>, %b: tensor<2x!quant.uniform<i32:f32:0, {0.125:0, 0.125:0}>>) -> tensor<1x2x!quant.uniform<i8:f32, 0.3:5>> {
  %0 = quant.fully_connected %x, %w, %b : (tensor<1x8x!quant.uniform<i8:f32, 0.5:-3>>, tensor<2x8x!quant.uniform<i8:f32:0, {0.25:0, 0.125:0}>>, tensor<2x!quant.uniform<i32:f32:0, {0.125:0, 0.125:0}>>) -> tensor<1x2x!quant.uniform<i8:f32, 0.3:5>>
  func.return %0 : tensor<1x2x!quant.uniform<i8:f32, 0.3:5>>
}

// CHECK: quant.fully_connected bias scale must equal input scale * weight scale per channel

// -----

func.func @bias_zero_point(%x: tensor<1x8x!quant.uniform<i8:f32, 0.5:-3>>, %w: tensor<2x8x!quant.uniform<i8:f32, 0.25:0>>, %b: tensor<2x!quant.uniform<i32:f32, 0.125:1>>) -> tensor<1x2x!quant.uniform<i8:f32, 0.3:5>> {
  %0 = quant.fully_connected %x, %w, %b : (tensor<1x8x!quant.uniform<i8:f32, 0.5:-3>>, tensor<2x8x!quant.uniform<i8:f32, 0.25:0>>, tensor<2x!quant.uniform<i32:f32, 0.125:1>>) -> tensor<1x2x!quant.uniform<i8:f32, 0.3:5>>
  func.return %0 : tensor<1x2x!quant.uniform<i8:f32, 0.3:5>>
}

// CHECK: quant.fully_connected bias zero-point must be 0

// -----

func.func @bias_storage(%x: tensor<1x8x!quant.uniform<i8:f32, 0.5:-3>>, %w: tensor<2x8x!quant.uniform<i8:f32, 0.25:0>>, %b: tensor<2x!quant.uniform<i8:f32, 0.125:0>>) -> tensor<1x2x!quant.uniform<i8:f32, 0.3:5>> {
  %0 = quant.fully_connected %x, %w, %b : (tensor<1x8x!quant.uniform<i8:f32, 0.5:-3>>, tensor<2x8x!quant.uniform<i8:f32, 0.25:0>>, tensor<2x!quant.uniform<i8:f32, 0.125:0>>) -> tensor<1x2x!quant.uniform<i8:f32, 0.3:5>>
  func.return %0 : tensor<1x2x!quant.uniform<i8:f32, 0.3:5>>
}

// CHECK: quant.fully_connected bias must have i32 storage, got i8

// -----

func.func @bias_shape(%x: tensor<1x8x!quant.uniform<i8:f32, 0.5:-3>>, %w: tensor<2x8x!quant.uniform<i8:f32, 0.25:0>>, %b: tensor<3x!quant.uniform<i32:f32, 0.125:0>>) -> tensor<1x2x!quant.uniform<i8:f32, 0.3:5>> {
  %0 = quant.fully_connected %x, %w, %b : (tensor<1x8x!quant.uniform<i8:f32, 0.5:-3>>, tensor<2x8x!quant.uniform<i8:f32, 0.25:0>>, tensor<3x!quant.uniform<i32:f32, 0.125:0>>) -> tensor<1x2x!quant.uniform<i8:f32, 0.3:5>>
  func.return %0 : tensor<1x2x!quant.uniform<i8:f32, 0.3:5>>
}

// CHECK: quant.fully_connected bias must have shape [2], got [3]

// -----

func.func @per_channel_activation(%x: tensor<1x2x!quant.uniform<i8:f32:1, {0.5:0, 0.25:0}>>, %w: tensor<2x2x!quant.uniform<i8:f32, 0.25:0>>) -> tensor<1x2x!quant.uniform<i8:f32, 0.3:5>> {
  %0 = quant.fully_connected %x, %w : (tensor<1x2x!quant.uniform<i8:f32:1, {0.5:0, 0.25:0}>>, tensor<2x2x!quant.uniform<i8:f32, 0.25:0>>) -> tensor<1x2x!quant.uniform<i8:f32, 0.3:5>>
  func.return %0 : tensor<1x2x!quant.uniform<i8:f32, 0.3:5>>
}

// CHECK: quant.fully_connected input must be quantized per-tensor

// -----

func.func @weight_axis(%x: tensor<1x2x!quant.uniform<i8:f32, 0.5:0>>, %w: tensor<2x2x!quant.uniform<i8:f32:1, {0.25:0, 0.25:0}>>) -> tensor<1x2x!quant.uniform<i8:f32, 0.3:5>> {
  %0 = quant.fully_connected %x, %w : (tensor<1x2x!quant.uniform<i8:f32, 0.5:0>>, tensor<2x2x!quant.uniform<i8:f32:1, {0.25:0, 0.25:0}>>) -> tensor<1x2x!quant.uniform<i8:f32, 0.3:5>>
  func.return %0 : tensor<1x2x!quant.uniform<i8:f32, 0.3:5>>
}

// CHECK: quant.fully_connected weight must be quantized per output channel (axis 0)

// -----

func.func @fully_connected_shapes(%x: tensor<1x8x!quant.uniform<i8:f32, 0.5:-3>>, %w: tensor<2x7x!quant.uniform<i8:f32, 0.25:0>>) -> tensor<1x2x!quant.uniform<i8:f32, 0.3:5>> {
  %0 = quant.fully_connected %x, %w : (tensor<1x8x!quant.uniform<i8:f32, 0.5:-3>>, tensor<2x7x!quant.uniform<i8:f32, 0.25:0>>) -> tensor<1x2x!quant.uniform<i8:f32, 0.3:5>>
  func.return %0 : tensor<1x2x!quant.uniform<i8:f32, 0.3:5>>
}

// CHECK: quant.fully_connected expects input [N, K], weight [M, K] and result [N, M], got [1, 8], [2, 7] and [1, 2]

// -----

func.func @act_range(%x: tensor<1x8x!quant.uniform<i8:f32, 0.5:-3>>, %w: tensor<2x8x!quant.uniform<i8:f32, 0.25:0>>) -> tensor<1x2x!quant.uniform<i8:f32, 0.3:5>> {
  %0 = quant.fully_connected %x, %w {act_min = -200 : i32} : (tensor<1x8x!quant.uniform<i8:f32, 0.5:-3>>, tensor<2x8x!quant.uniform<i8:f32, 0.25:0>>) -> tensor<1x2x!quant.uniform<i8:f32, 0.3:5>>
  func.return %0 : tensor<1x2x!quant.uniform<i8:f32, 0.3:5>>
}

// CHECK: activation range [-200, 127] must lie inside the i8 storage range [-128, 127]

// -----

func.func @act_range_order(%a: tensor<4x!quant.uniform<u8:f32, 0.5:0>>) -> tensor<4x!quant.uniform<u8:f32, 0.5:0>> {
  %0 = quant.add %a, %a {act_min = 10 : i32, act_max = 5 : i32} : (tensor<4x!quant.uniform<u8:f32, 0.5:0>>, tensor<4x!quant.uniform<u8:f32, 0.5:0>>) -> tensor<4x!quant.uniform<u8:f32, 0.5:0>>
  func.return %0 : tensor<4x!quant.uniform<u8:f32, 0.5:0>>
}

// CHECK: activation range is empty: act_min 10 is above act_max 5

// -----

func.func @conv_shapes(%x: tensor<1x3x8x8x!quant.uniform<i8:f32, 0.5:-3>>, %w: tensor<2x3x3x3x!quant.uniform<i8:f32, 0.25:0>>) -> tensor<1x2x8x8x!quant.uniform<i8:f32, 0.1:0>> {
  %0 = quant.conv2d %x, %w {strides = array<i64: 1, 1>, pads = array<i64: 0, 0, 0, 0>, dilations = array<i64: 1, 1>, groups = 1 : i64} : (tensor<1x3x8x8x!quant.uniform<i8:f32, 0.5:-3>>, tensor<2x3x3x3x!quant.uniform<i8:f32, 0.25:0>>) -> tensor<1x2x8x8x!quant.uniform<i8:f32, 0.1:0>>
  func.return %0 : tensor<1x2x8x8x!quant.uniform<i8:f32, 0.1:0>>
}

// CHECK: quant.conv2d: result shape must be [1, 2, 6, 6], got [1, 2, 8, 8]

// -----

func.func @add_shapes(%a: tensor<4x!quant.uniform<i8:f32, 0.5:0>>, %b: tensor<1x4x!quant.uniform<i8:f32, 0.5:0>>) -> tensor<4x!quant.uniform<i8:f32, 0.5:0>> {
  %0 = quant.add %a, %b : (tensor<4x!quant.uniform<i8:f32, 0.5:0>>, tensor<1x4x!quant.uniform<i8:f32, 0.5:0>>) -> tensor<4x!quant.uniform<i8:f32, 0.5:0>>
  func.return %0 : tensor<4x!quant.uniform<i8:f32, 0.5:0>>
}

// CHECK: quant.add: operand shape [1, 4] differs from result shape [4]

// -----

func.func @global_avg_pool_shape(%x: tensor<1x4x8x8x!quant.uniform<i8:f32, 0.5:0>>) -> tensor<1x4x!quant.uniform<i8:f32, 0.5:0>> {
  %0 = quant.global_avg_pool %x : (tensor<1x4x8x8x!quant.uniform<i8:f32, 0.5:0>>) -> tensor<1x4x!quant.uniform<i8:f32, 0.5:0>>
  func.return %0 : tensor<1x4x!quant.uniform<i8:f32, 0.5:0>>
}

// CHECK: quant.global_avg_pool expects an NCHW input and an Nx C x1x1 result, got [1, 4, 8, 8] -> [1, 4]

// -----

func.func @transpose_wrong_channel_axis(%w: tensor<2x2x3x3x!quant.uniform<i8:f32:0, {0.1:0, 0.2:0}>>) {
  // The channel axis moves to 1 with this perm; a result that keeps axis 0 is wrong.
  // CHECK: nn.transpose: result element type must be !quant.uniform<i8:f32:1, {0.1:0, 0.2:0}>
  %t = nn.transpose %w {perm = array<i64: 1, 0, 2, 3>} : (tensor<2x2x3x3x!quant.uniform<i8:f32:0, {0.1:0, 0.2:0}>>) -> tensor<2x2x3x3x!quant.uniform<i8:f32:0, {0.1:0, 0.2:0}>>
  func.return
}
