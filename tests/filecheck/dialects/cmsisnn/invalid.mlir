// Each verifier error of the cmsisnn dialect: one case per split-input chunk.
// RUN: tinymlir-opt %s --split-input-file --verify-diagnostics | filecheck %s

func.func @conv_filter_channels(%x: tensor<1x8x8x4xi8>, %w: tensor<6x3x3x3xi8>) -> tensor<1x8x8x6xi8> {
  %0 = cmsisnn.convolve_wrapper_s8 %x, %w input_offset 0 output_offset 0 stride [1, 1] padding [1, 1] dilation [1, 1] activation(-128, 127) multipliers [1, 1, 1, 1, 1, 1] shifts [0, 0, 0, 0, 0, 0] : (tensor<1x8x8x4xi8>, tensor<6x3x3x3xi8>) -> tensor<1x8x8x6xi8>
  func.return %0 : tensor<1x8x8x6xi8>
}

// CHECK: cmsisnn.convolve_wrapper_s8: filter [C_OUT, KH, KW, C_IN] = [6, 3, 3, 3] does not match 4 input channels

// -----

func.func @conv_input_offset(%x: tensor<1x8x8x4xi8>, %w: tensor<2x1x1x4xi8>) -> tensor<1x8x8x2xi8> {
  %0 = cmsisnn.convolve_wrapper_s8 %x, %w input_offset -128 output_offset 0 stride [1, 1] padding [0, 0] dilation [1, 1] activation(-128, 127) multipliers [1, 1] shifts [0, 0] : (tensor<1x8x8x4xi8>, tensor<2x1x1x4xi8>) -> tensor<1x8x8x2xi8>
  func.return %0 : tensor<1x8x8x2xi8>
}

// CHECK: cmsisnn.convolve_wrapper_s8: input_offset -128 is outside [-127, 128]

// -----

func.func @conv_multipliers(%x: tensor<1x8x8x4xi8>, %w: tensor<2x1x1x4xi8>) -> tensor<1x8x8x2xi8> {
  %0 = cmsisnn.convolve_wrapper_s8 %x, %w input_offset 0 output_offset 0 stride [1, 1] padding [0, 0] dilation [1, 1] activation(-128, 127) multipliers [1] shifts [0] : (tensor<1x8x8x4xi8>, tensor<2x1x1x4xi8>) -> tensor<1x8x8x2xi8>
  func.return %0 : tensor<1x8x8x2xi8>
}

// CHECK: cmsisnn.convolve_wrapper_s8: needs 2 multipliers and as many shifts (one per output channel), got 1 multipliers and 1 shifts

// -----

func.func @conv_shift(%x: tensor<1x8x8x4xi8>, %w: tensor<2x1x1x4xi8>) -> tensor<1x8x8x2xi8> {
  %0 = cmsisnn.convolve_wrapper_s8 %x, %w input_offset 0 output_offset 0 stride [1, 1] padding [0, 0] dilation [1, 1] activation(-128, 127) multipliers [1, 1] shifts [0, -32] : (tensor<1x8x8x4xi8>, tensor<2x1x1x4xi8>) -> tensor<1x8x8x2xi8>
  func.return %0 : tensor<1x8x8x2xi8>
}

// CHECK: cmsisnn.convolve_wrapper_s8: channel 1 shift -32 is outside [-31, 30]

// -----

func.func @conv_output_size(%x: tensor<1x8x8x4xi8>, %w: tensor<2x3x3x4xi8>) -> tensor<1x6x4x2xi8> {
  %0 = cmsisnn.convolve_wrapper_s8 %x, %w input_offset 0 output_offset 0 stride [2, 2] padding [1, 1] dilation [1, 1] activation(-128, 127) multipliers [1, 1] shifts [0, 0] : (tensor<1x8x8x4xi8>, tensor<2x3x3x4xi8>) -> tensor<1x6x4x2xi8>
  func.return %0 : tensor<1x6x4x2xi8>
}

// CHECK: cmsisnn.convolve_wrapper_s8: output height 6 does not fit input height 8 with kernel 3, stride 2, padding 1 and dilation 1

// -----

func.func @conv_element_type(%x: tensor<1x8x8x4xi16>, %w: tensor<2x1x1x4xi8>) -> tensor<1x8x8x2xi8> {
  %0 = cmsisnn.convolve_wrapper_s8 %x, %w input_offset 0 output_offset 0 stride [1, 1] padding [0, 0] dilation [1, 1] activation(-128, 127) multipliers [1, 1] shifts [0, 0] : (tensor<1x8x8x4xi16>, tensor<2x1x1x4xi8>) -> tensor<1x8x8x2xi8>
  func.return %0 : tensor<1x8x8x2xi8>
}

// CHECK: cmsisnn.convolve_wrapper_s8: input must be a tensor of i8, got tensor<1x8x8x4xi16>

// -----

func.func @conv_bias(%x: tensor<1x8x8x4xi8>, %w: tensor<2x1x1x4xi8>, %b: tensor<3xi32>) -> tensor<1x8x8x2xi8> {
  %0 = cmsisnn.convolve_wrapper_s8 %x, %w, %b input_offset 0 output_offset 0 stride [1, 1] padding [0, 0] dilation [1, 1] activation(-128, 127) multipliers [1, 1] shifts [0, 0] : (tensor<1x8x8x4xi8>, tensor<2x1x1x4xi8>, tensor<3xi32>) -> tensor<1x8x8x2xi8>
  func.return %0 : tensor<1x8x8x2xi8>
}

// CHECK: cmsisnn.convolve_wrapper_s8: bias must have shape [2], got [3]

// -----

func.func @depthwise_filter(%x: tensor<1x8x8x4xi8>, %w: tensor<4x3x3x1xi8>) -> tensor<1x8x8x4xi8> {
  %0 = cmsisnn.depthwise_conv_wrapper_s8 %x, %w input_offset 0 output_offset 0 ch_mult 1 stride [1, 1] padding [1, 1] dilation [1, 1] activation(-128, 127) multipliers [1, 1, 1, 1] shifts [0, 0, 0, 0] : (tensor<1x8x8x4xi8>, tensor<4x3x3x1xi8>) -> tensor<1x8x8x4xi8>
  func.return %0 : tensor<1x8x8x4xi8>
}

// CHECK: cmsisnn.depthwise_conv_wrapper_s8: filter must be [1, KH, KW, C_OUT], got [4, 3, 3, 1]

// -----

func.func @depthwise_ch_mult(%x: tensor<1x8x8x4xi8>, %w: tensor<1x3x3x8xi8>) -> tensor<1x8x8x8xi8> {
  %0 = cmsisnn.depthwise_conv_wrapper_s8 %x, %w input_offset 0 output_offset 0 ch_mult 1 stride [1, 1] padding [1, 1] dilation [1, 1] activation(-128, 127) multipliers [1, 1, 1, 1, 1, 1, 1, 1] shifts [0, 0, 0, 0, 0, 0, 0, 0] : (tensor<1x8x8x4xi8>, tensor<1x3x3x8xi8>) -> tensor<1x8x8x8xi8>
  func.return %0 : tensor<1x8x8x8xi8>
}

// CHECK: cmsisnn.depthwise_conv_wrapper_s8: filter has 8 output channels, expected input channels 4 * ch_mult 1

// -----

func.func @fully_connected_shapes(%x: tensor<1x16xi8>, %w: tensor<3x15xi8>) -> tensor<1x3xi8> {
  %0 = cmsisnn.fully_connected_s8 %x, %w input_offset 0 filter_offset 0 output_offset 0 activation(-128, 127) multipliers [1] shifts [0] : (tensor<1x16xi8>, tensor<3x15xi8>) -> tensor<1x3xi8>
  func.return %0 : tensor<1x3xi8>
}

// CHECK: cmsisnn.fully_connected_s8: expects input [N, K], filter [C_OUT, K] and result [N, C_OUT], got [1, 16], [3, 15] and [1, 3]

// -----

func.func @fully_connected_multipliers(%x: tensor<1x16xi8>, %w: tensor<3x16xi8>) -> tensor<1x3xi8> {
  %0 = cmsisnn.fully_connected_s8 %x, %w input_offset 0 filter_offset 0 output_offset 0 activation(-128, 127) multipliers [1, 2] shifts [0, 0] : (tensor<1x16xi8>, tensor<3x16xi8>) -> tensor<1x3xi8>
  func.return %0 : tensor<1x3xi8>
}

// CHECK: cmsisnn.fully_connected_s8: needs 1 or 3 multipliers and as many shifts (one per output channel), got 2 multipliers and 2 shifts

// -----

func.func @add_shapes(%a: tensor<1x4x4x8xi8>, %b: tensor<1x4x4x4xi8>) -> tensor<1x4x4x8xi8> {
  %0 = cmsisnn.elementwise_add_s8 %a, %b input1(offset = 0, multiplier = 1073741824, shift = 0) input2(offset = 0, multiplier = 1073741824, shift = 0) left_shift 20 output(offset = 0, multiplier = 1073741824, shift = -19) activation(-128, 127) : (tensor<1x4x4x8xi8>, tensor<1x4x4x4xi8>) -> tensor<1x4x4x8xi8>
  func.return %0 : tensor<1x4x4x8xi8>
}

// CHECK: cmsisnn.elementwise_add_s8: operands and result must have the same shape, got [1, 4, 4, 8], [1, 4, 4, 4] and [1, 4, 4, 8]

// -----

func.func @add_multiplier(%a: tensor<8xi8>, %b: tensor<8xi8>) -> tensor<8xi8> {
  %0 = cmsisnn.elementwise_add_s8 %a, %b input1(offset = 0, multiplier = -5, shift = 0) input2(offset = 0, multiplier = 1073741824, shift = 0) left_shift 20 output(offset = 0, multiplier = 1073741824, shift = -19) activation(-128, 127) : (tensor<8xi8>, tensor<8xi8>) -> tensor<8xi8>
  func.return %0 : tensor<8xi8>
}

// CHECK: cmsisnn.elementwise_add_s8: input1 multiplier -5 must be a non-negative Q31 value

// -----

func.func @activation_range(%x: tensor<1x4x4x8xi8>) -> tensor<1x1x1x8xi8> {
  %0 = cmsisnn.avgpool_s8 %x kernel [4, 4] stride [1, 1] padding [0, 0] activation(10, -10) : (tensor<1x4x4x8xi8>) -> tensor<1x1x1x8xi8>
  func.return %0 : tensor<1x1x1x8xi8>
}

// CHECK: cmsisnn.avgpool_s8: activation range [10, -10] must be a non-empty range inside [-128, 127]

// -----

func.func @pool_channels(%x: tensor<1x4x4x8xi8>) -> tensor<1x2x2x4xi8> {
  %0 = cmsisnn.max_pool_s8 %x kernel [2, 2] stride [2, 2] padding [0, 0] activation(-128, 127) : (tensor<1x4x4x8xi8>) -> tensor<1x2x2x4xi8>
  func.return %0 : tensor<1x2x2x4xi8>
}

// CHECK: cmsisnn.max_pool_s8: result [1, 2, 2, 4] must keep the batch and channels of input [1, 4, 4, 8]

// -----

func.func @pool_kernel(%x: tensor<1x4x4x8xi8>) -> tensor<1x1x1x8xi8> {
  %0 = cmsisnn.avgpool_s8 %x kernel [0, 4] stride [1, 1] padding [0, 0] activation(-128, 127) : (tensor<1x4x4x8xi8>) -> tensor<1x1x1x8xi8>
  func.return %0 : tensor<1x1x1x8xi8>
}

// CHECK: cmsisnn.avgpool_s8: kernel must be [h, w], two positive integers, got [0, 4]

// -----

func.func @requantize_shape(%x: tensor<4x8xi8>) -> tensor<8x4xi8> {
  %0 = cmsisnn.requantize_s8 %x input_offset 0 output_offset 0 left_shift 0 multiplier 1073741824 shift 0 activation(-128, 127) : (tensor<4x8xi8>) -> tensor<8x4xi8>
  func.return %0 : tensor<8x4xi8>
}

// CHECK: cmsisnn.requantize_s8: operand shape [4, 8] differs from result shape [8, 4]

// -----

func.func @quantize_zero_point(%x: tensor<4xf32>) -> tensor<4xi8> {
  %0 = cmsisnn.quantize_s8 %x scale 0.5 zero_point 128 : (tensor<4xf32>) -> tensor<4xi8>
  func.return %0 : tensor<4xi8>
}

// CHECK: cmsisnn.quantize_s8: zero_point 128 is outside [-128, 127]

// -----

func.func @dequantize_scale(%x: tensor<4xi8>) -> tensor<4xf32> {
  %0 = cmsisnn.dequantize_s8 %x scale -0.5 zero_point 0 : (tensor<4xi8>) -> tensor<4xf32>
  func.return %0 : tensor<4xf32>
}

// CHECK: cmsisnn.dequantize_s8: scale must be positive and finite, got -0.5

// -----

func.func @dequantize_types(%x: tensor<4xf32>) -> tensor<4xf32> {
  %0 = cmsisnn.dequantize_s8 %x scale 0.5 zero_point 0 : (tensor<4xf32>) -> tensor<4xf32>
  func.return %0 : tensor<4xf32>
}

// CHECK: cmsisnn.dequantize_s8: integer side must be a tensor of i8, got tensor<4xf32>
