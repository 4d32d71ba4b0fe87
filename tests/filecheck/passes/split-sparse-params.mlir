// RUN: tinymlir-opt %s -p split-sparse-params | filecheck %s
// RUN: tinymlir-opt %s -p split-sparse-params | tinymlir-opt | filecheck %s

// The weight @w is trained on output channels [1, 3] only: its rows 1 and 3 become the
// trainable @w.train (SRAM), rows 0 and 2 the frozen @w.rest (flash); the bias splits the
// same way and stays trainable. The convolution runs twice (multipliers [1, 3] and [0, 2])
// and merges its channels; the input gradient sums the two halves; the updates read the
// gathered gradient channels.
// CHECK:      train.param @w.train trainable : tensor<2x1x1x2xi8> = dense<{{\[\[\[\[}}3, 4]]], {{\[\[\[}}7, 8]]]]>
// CHECK-NEXT: train.param @w.rest : tensor<2x1x1x2xi8> = dense<{{\[\[\[\[}}1, 2]]], {{\[\[\[}}5, 6]]]]>
// CHECK-NEXT: train.param @b.train trainable : tensor<2xi32> = dense<[20, 40]>
// CHECK-NEXT: train.param @b.rest trainable : tensor<2xi32> = dense<[10, 30]>
// CHECK:      %[[WT:.*]] = train.load @w.train
// CHECK:      %[[BT:.*]] = train.load @b.train
// CHECK:      %[[YT:.*]] = cmsisnn.convolve_wrapper_s8 %{{.*}}, %[[WT]], %[[BT]] {{.*}} multipliers [1073741825, 1073741827] shifts [-1, -3]
// CHECK:      %[[WR:.*]] = train.load @w.rest
// CHECK:      %[[BR:.*]] = train.load @b.rest
// CHECK:      %[[YR:.*]] = cmsisnn.convolve_wrapper_s8 %{{.*}}, %[[WR]], %[[BR]] {{.*}} multipliers [1073741824, 1073741826] shifts [0, -2]
// CHECK:      %[[Y:.*]] = tk.merge_channels %[[YT]], %[[YR]] channels [1, 3] : (tensor<1x2x2x2xi8>, tensor<1x2x2x2xi8>) -> tensor<1x2x2x4xi8>
// CHECK:      %[[GT:.*]] = tk.gather_channels %{{.*}} channels [1, 3] : (tensor<1x2x2x4xf32>) -> tensor<1x2x2x2xf32>
// CHECK:      %[[DT:.*]] = tk.conv_input_grad %[[GT]], %{{.*}} {{.*}} {w_scale = [2.500000e-01 : f32, 1.250000e-01 : f32]}
// CHECK:      %[[GR:.*]] = tk.gather_channels %{{.*}} channels [0, 2]
// CHECK:      %[[DR:.*]] = tk.conv_input_grad %[[GR]], %{{.*}} {{.*}} {w_scale = [5.000000e-01 : f32, 5.000000e-01 : f32]}
// CHECK:      %[[DX:.*]] = tk.add %[[DT]], %[[DR]]
// CHECK:      tk.conv_weight_grad_sgd @w.train, %[[GT]], {{.*}} rounding "nearest" {x_scale = [5.000000e-01 : f32], factor = [4.000000e+00 : f32, 8.000000e+00 : f32]}
// CHECK:      tk.bias_grad_sgd @b.train, %[[GT]], {{.*}} {factor = [4.000000e+00 : f32, 8.000000e+00 : f32]}
// CHECK:      tk.bias_grad_sgd @b.rest, %[[GR]], {{.*}} {factor = [2.000000e+00 : f32, 2.000000e+00 : f32]}
// CHECK:      func.return
builtin.module {
  train.param @w trainable : tensor<4x1x1x2xi8> = dense<[[[[1, 2]]], [[[3, 4]]], [[[5, 6]]], [[[7, 8]]]]> : tensor<4x1x1x2xi8>
  train.param @b trainable : tensor<4xi32> = dense<[10, 20, 30, 40]> : tensor<4xi32>
  func.func @train_step(%x: tensor<1x2x2x2xi8>, %g: tensor<1x2x2x4xf32>, %lr: f32) -> (tensor<1x2x2x4xi8>, tensor<1x2x2x2xf32>) {
    %w = train.load @w : tensor<4x1x1x2xi8>
    %b = train.load @b : tensor<4xi32>
    %y = cmsisnn.convolve_wrapper_s8 %x, %w, %b input_offset 0 output_offset 0 stride [1, 1] padding [0, 0] dilation [1, 1] activation(-128, 127) multipliers [1073741824, 1073741825, 1073741826, 1073741827] shifts [0, -1, -2, -3] : (tensor<1x2x2x2xi8>, tensor<4x1x1x2xi8>, tensor<4xi32>) -> tensor<1x2x2x4xi8>
    %dx = tk.conv_input_grad %g, %w stride [1, 1] padding [0, 0] dilation [1, 1] {w_scale = [0.5 : f32, 0.25 : f32, 0.5 : f32, 0.125 : f32]} : (tensor<1x2x2x4xf32>, tensor<4x1x1x2xi8>) -> tensor<1x2x2x2xf32>
    tk.conv_weight_grad_sgd @w, %g, %x, %lr stride [1, 1] padding [0, 0] dilation [1, 1] x_offset 0 channels [1, 3] rounding "nearest" {x_scale = [0.5 : f32], factor = [2.0 : f32, 4.0 : f32, 2.0 : f32, 8.0 : f32]} : tensor<1x2x2x4xf32>, tensor<1x2x2x2xi8>
    tk.bias_grad_sgd @b, %g, %lr rounding "nearest" {factor = [2.0 : f32, 4.0 : f32, 2.0 : f32, 8.0 : f32]} : tensor<1x2x2x4xf32>
    func.return %y, %dx : tensor<1x2x2x4xi8>, tensor<1x2x2x2xf32>
  }
}
