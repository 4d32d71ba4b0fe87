// Every cmsisnn op parses and prints back, in the custom and in the generic form.
// RUN: tinymlir-opt %s | tinymlir-opt | filecheck %s
// RUN: tinymlir-opt %s --print-op-generic | tinymlir-opt | filecheck %s

func.func @convolutions(%x: tensor<1x8x8x4xi8>, %w: tensor<6x3x3x4xi8>, %g: tensor<6x1x1x2xi8>, %dw: tensor<1x3x3x8xi8>, %b: tensor<6xi32>, %b8: tensor<8xi32>) -> (tensor<1x4x4x6xi8>, tensor<1x8x8x6xi8>, tensor<1x8x8x8xi8>) {
  %0 = cmsisnn.convolve_wrapper_s8 %x, %w, %b input_offset 128 output_offset -128 stride [2, 2] padding [1, 1] dilation [1, 1] activation(-128, 127) multipliers [1073741824, 1073741824, 1073741824, 1073741824, 1073741824, 2147483647] shifts [-8, -8, -8, -8, -8, -9] : (tensor<1x8x8x4xi8>, tensor<6x3x3x4xi8>, tensor<6xi32>) -> tensor<1x4x4x6xi8>
  %1 = cmsisnn.convolve_wrapper_s8 %x, %g input_offset 0 output_offset 5 stride [1, 1] padding [0, 0] dilation [1, 1] activation(-128, 100) multipliers [1, 2, 3, 4, 5, 6] shifts [0, 0, 0, 0, 0, 0] : (tensor<1x8x8x4xi8>, tensor<6x1x1x2xi8>) -> tensor<1x8x8x6xi8>
  %2 = cmsisnn.depthwise_conv_wrapper_s8 %x, %dw, %b8 input_offset -3 output_offset 7 ch_mult 2 stride [1, 1] padding [2, 2] dilation [2, 2] activation(-100, 100) multipliers [1, 1, 1, 1, 1, 1, 1, 1] shifts [-1, -1, -1, -1, -1, -1, -1, -1] : (tensor<1x8x8x4xi8>, tensor<1x3x3x8xi8>, tensor<8xi32>) -> tensor<1x8x8x8xi8>
  func.return %0, %1, %2 : tensor<1x4x4x6xi8>, tensor<1x8x8x6xi8>, tensor<1x8x8x8xi8>
}

// CHECK-LABEL: func.func @convolutions
// CHECK:       cmsisnn.convolve_wrapper_s8 %{{.*}}, %{{.*}}, %{{.*}} input_offset 128 output_offset -128 stride [2, 2] padding [1, 1] dilation [1, 1] activation(-128, 127) multipliers [1073741824, 1073741824, 1073741824, 1073741824, 1073741824, 2147483647] shifts [-8, -8, -8, -8, -8, -9] : (tensor<1x8x8x4xi8>, tensor<6x3x3x4xi8>, tensor<6xi32>) -> tensor<1x4x4x6xi8>
// CHECK:       cmsisnn.convolve_wrapper_s8 %{{[^,]*}}, %{{[^,]*}} input_offset 0 output_offset 5 {{.*}} : (tensor<1x8x8x4xi8>, tensor<6x1x1x2xi8>) -> tensor<1x8x8x6xi8>
// CHECK:       cmsisnn.depthwise_conv_wrapper_s8 %{{.*}}, %{{.*}}, %{{.*}} input_offset -3 output_offset 7 ch_mult 2 stride [1, 1] padding [2, 2] dilation [2, 2] activation(-100, 100)

func.func @fully_connected(%x: tensor<2x16xi8>, %w: tensor<3x16xi8>, %b: tensor<3xi32>) -> (tensor<2x3xi8>, tensor<2x3xi8>) {
  %0 = cmsisnn.fully_connected_s8 %x, %w, %b input_offset 1 filter_offset 0 output_offset -34 activation(-128, 127) multipliers [1500000000] shifts [-7] : (tensor<2x16xi8>, tensor<3x16xi8>, tensor<3xi32>) -> tensor<2x3xi8>
  %1 = cmsisnn.fully_connected_s8 %x, %w input_offset 1 filter_offset 3 output_offset -34 activation(-128, 127) multipliers [1500000000, 1500000001, 1500000002] shifts [-7, -7, -8] : (tensor<2x16xi8>, tensor<3x16xi8>) -> tensor<2x3xi8>
  func.return %0, %1 : tensor<2x3xi8>, tensor<2x3xi8>
}

// CHECK-LABEL: func.func @fully_connected
// CHECK:       cmsisnn.fully_connected_s8 %{{.*}}, %{{.*}}, %{{.*}} input_offset 1 filter_offset 0 output_offset -34 activation(-128, 127) multipliers [1500000000] shifts [-7]
// CHECK:       cmsisnn.fully_connected_s8 %{{[^,]*}}, %{{[^,]*}} input_offset 1 filter_offset 3 {{.*}} multipliers [1500000000, 1500000001, 1500000002] shifts [-7, -7, -8]

func.func @elementwise(%a: tensor<1x4x4x8xi8>, %b: tensor<1x4x4x8xi8>) -> (tensor<1x4x4x8xi8>, tensor<1x4x4x8xi8>) {
  %0 = cmsisnn.elementwise_add_s8 %a, %b input1(offset = 5, multiplier = 1073741824, shift = 0) input2(offset = -14, multiplier = 2009243520, shift = -1) left_shift 20 output(offset = 12, multiplier = 1101628160, shift = -19) activation(-128, 127) : (tensor<1x4x4x8xi8>, tensor<1x4x4x8xi8>) -> tensor<1x4x4x8xi8>
  %1 = cmsisnn.requantize_s8 %a input_offset 1 output_offset -2 left_shift 20 multiplier 1431655765 shift -19 activation(-128, 127) : (tensor<1x4x4x8xi8>) -> tensor<1x4x4x8xi8>
  func.return %0, %1 : tensor<1x4x4x8xi8>, tensor<1x4x4x8xi8>
}

// CHECK-LABEL: func.func @elementwise
// CHECK:       cmsisnn.elementwise_add_s8 %{{.*}}, %{{.*}} input1(offset = 5, multiplier = 1073741824, shift = 0) input2(offset = -14, multiplier = 2009243520, shift = -1) left_shift 20 output(offset = 12, multiplier = 1101628160, shift = -19) activation(-128, 127)
// CHECK:       cmsisnn.requantize_s8 %{{.*}} input_offset 1 output_offset -2 left_shift 20 multiplier 1431655765 shift -19 activation(-128, 127)

func.func @pooling(%x: tensor<1x4x4x8xi8>) -> (tensor<1x1x1x8xi8>, tensor<1x2x2x8xi8>) {
  %0 = cmsisnn.avgpool_s8 %x kernel [4, 4] stride [1, 1] padding [0, 0] activation(-128, 127) : (tensor<1x4x4x8xi8>) -> tensor<1x1x1x8xi8>
  %1 = cmsisnn.max_pool_s8 %x kernel [3, 3] stride [2, 2] padding [1, 1] activation(-128, 127) : (tensor<1x4x4x8xi8>) -> tensor<1x2x2x8xi8>
  func.return %0, %1 : tensor<1x1x1x8xi8>, tensor<1x2x2x8xi8>
}

// CHECK-LABEL: func.func @pooling
// CHECK:       cmsisnn.avgpool_s8 %{{.*}} kernel [4, 4] stride [1, 1] padding [0, 0] activation(-128, 127) : (tensor<1x4x4x8xi8>) -> tensor<1x1x1x8xi8>
// CHECK:       cmsisnn.max_pool_s8 %{{.*}} kernel [3, 3] stride [2, 2] padding [1, 1] activation(-128, 127) : (tensor<1x4x4x8xi8>) -> tensor<1x2x2x8xi8>

func.func @boundary(%x: tensor<1x3x4x4xf32>) -> tensor<1x3x4x4xf32> {
  %q = cmsisnn.quantize_s8 %x scale 0.00784313772 zero_point 0 : (tensor<1x3x4x4xf32>) -> tensor<1x3x4x4xi8>
  %y = cmsisnn.dequantize_s8 %q scale 0.5 zero_point -34 : (tensor<1x3x4x4xi8>) -> tensor<1x3x4x4xf32>
  func.return %y : tensor<1x3x4x4xf32>
}

// CHECK-LABEL: func.func @boundary
// CHECK:       cmsisnn.quantize_s8 %{{.*}} scale 0.00784313772 zero_point 0 : (tensor<1x3x4x4xf32>) -> tensor<1x3x4x4xi8>
// CHECK:       cmsisnn.dequantize_s8 %{{.*}} scale 5.000000e-01 zero_point -34 : (tensor<1x3x4x4xi8>) -> tensor<1x3x4x4xf32>
